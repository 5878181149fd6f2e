"""Build a caption embedding table for ``--text-table`` (training and evaluation on a machine
that has no MiniLM, e.g. a GPU box that cannot install it).

    # captions of shards you have
    python -m tango3d_core.train.text_table table.safetensors --data data_cache/train --prompts
    # captions of shards another machine will build (same generator, same seeds)
    python -m tango3d_core.train.text_table table.safetensors --shapes-per-category 60 \
        --test-shapes-per-category 6 --prompts

``--prompts`` and ``--test-shapes-per-category`` add what the evaluation queries with: the
category prompts ("a chair", ...) and the test shapes' captions. The MiniLM runs
here; the table is float16, about 0.8 kB per string.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import shapes
from ..data.dataset import SPLIT_OFFSET, ShardDataset
from ..models.text import TextEmbeddingTable


def captions_of_shards(data: str | Path, split: str = "train") -> list[str]:
    """Every caption in a shard directory's ``split``, in shape order (with repeats)."""
    reader = ShardDataset(data, split, augment=False).reader  # type: ignore[arg-type]
    return [reader.meta(i)["caption"] for i in range(reader.num_shapes)]


def captions_of_split(*, split: str, shapes_per_category: int, categories: list[str] | None = None,
                      progress: bool = True) -> list[str]:
    """Captions of the shapes ``build_shards`` would generate (instance i of a category in
    ``split`` is ``shapes.generate(category, SPLIT_OFFSET[split] + i)``)."""
    from tqdm.auto import tqdm

    cats = categories or list(shapes.CATEGORIES)
    jobs = [(c, SPLIT_OFFSET[split] + i) for i in range(shapes_per_category) for c in cats]
    return [shapes.generate(c, s).caption for c, s in tqdm(jobs, desc="captions", disable=not progress)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tango3d_core.train.text_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output .safetensors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="shard directory to read captions from")
    src.add_argument("--shapes-per-category", type=int, help="enumerate the captions of this many shapes per category")
    p.add_argument("--split", default="train", choices=sorted(SPLIT_OFFSET))
    p.add_argument("--categories", help="comma-separated subset (with --shapes-per-category)")
    p.add_argument("--test-shapes-per-category", type=int, default=0, metavar="M",
                   help="also the captions of the first M test-split shapes per category (the evaluation's "
                        "retrieval suite queries with them; its default uses 6)")
    p.add_argument("--prompts", action="store_true", help='add the category queries ("a chair", ...)')
    p.add_argument("--text", action="append", default=[], help="any other string to include (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    if args.data:
        texts = captions_of_shards(args.data, args.split)
    else:
        if args.shapes_per_category < 1:
            p.error("--shapes-per-category must be >= 1")
        cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
        unknown = sorted(set(cats or []) - set(shapes.CATEGORIES))
        if unknown:
            p.error(f"unknown categories {unknown}; choose from {list(shapes.CATEGORIES)}")
        texts = captions_of_split(split=args.split, shapes_per_category=args.shapes_per_category,
                                  categories=cats, progress=not args.no_progress)
    if args.test_shapes_per_category > 0:
        texts += captions_of_split(split="test", shapes_per_category=args.test_shapes_per_category,
                                   progress=not args.no_progress)
    if args.prompts:
        texts += [shapes.category_prompt(c) for c in shapes.CATEGORIES]
    texts += args.text
    table = TextEmbeddingTable.build(texts)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.save(args.out)
    print(f"wrote {args.out}: {len(table)} strings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
