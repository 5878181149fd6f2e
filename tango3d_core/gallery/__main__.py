"""``python -m tango3d_core.gallery``: build, query and inspect retrieval galleries.

    build DIR --out GALLERY        index every mesh under DIR (incremental, resumable)
    query GALLERY --text T | --image PATH | --vector NPY   [-k 5] [--json] [filters]
    info GALLERY                   what a gallery holds (JSON)
    procedural --out DIR           the bundled gallery of procedural shapes
    embed-ray DIR --shards S       embed on a Ray cluster (or a local Ray), write Parquet shards
    ingest S --out GALLERY         add Ray shards to a gallery

Exit status: 0 on success, 2 for a problem with the input (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _model_flags(p: argparse.ArgumentParser, *, query: bool = False) -> None:
    hint = " (default: the gallery's own model)" if query else " (default: the bundled one)"
    p.add_argument("--checkpoint", default=None, help="checkpoint directory" + hint)
    p.add_argument("--provider", default=None if query else "tango3d",
                   help="feature provider name or package.module:factory (default tango3d)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tango3d_core.gallery",
                                 description="Index meshes and search them by text, image or vector.")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="index every mesh under DIR (recursively, every supported format)")
    b.add_argument("dir", help="folder of mesh files")
    b.add_argument("--out", required=True, help="gallery folder (created or updated)")
    _model_flags(b)
    b.add_argument("--num-points", type=int, default=4096, help="surface samples per mesh (default 4096)")
    b.add_argument("--up-axis", choices=["z", "y"], default="z", help="up axis of the files (default z)")
    b.add_argument("--dense", action="store_true", help="also cache per-point features for the viewer")
    b.add_argument("--no-thumbnails", action="store_true", help="do not render thumbnails")
    b.add_argument("--chunk-size", type=int, default=32, help="meshes per resume checkpoint (default 32)")
    b.add_argument("--metadata", default=None,
                   help="JSON-lines file of {path, category, caption} (default: category = top folder)")
    b.add_argument("--rehash", action="store_true", help="hash every file even if size and mtime are unchanged")
    b.add_argument("--reembed", action="store_true", help="discard embeddings of another model and start afresh")
    b.add_argument("--retry-failed", action="store_true", help="try again files that failed in the last build")
    b.add_argument("--index", choices=["auto", "exact", "approx"], default="auto",
                   help="auto: exact up to 1M entries, approximate above (default)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    q = sub.add_parser("query", help="search a gallery; hits best first")
    q.add_argument("gallery")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="describe the shape")
    src.add_argument("--image", help="image file to search with")
    src.add_argument("--vector", help=".npy file holding one embedding [G]")
    q.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    q.add_argument("--category", action="append", default=None, help="keep this category (repeatable)")
    q.add_argument("--min-faces", type=int, default=None)
    q.add_argument("--max-faces", type=int, default=None)
    q.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine similarity")
    q.add_argument("--json", action="store_true", help="print a JSON list of hits")
    q.add_argument("--threads", type=int, default=None, help="threads scanning an exact index (default 2)")
    _model_flags(q, query=True)

    i = sub.add_parser("info", help="print what a gallery holds (JSON)")
    i.add_argument("gallery")

    pr = sub.add_parser("procedural", help="build a gallery of procedural shapes (the bundled one)")
    pr.add_argument("--out", required=True)
    pr.add_argument("--per-category", type=int, default=12)
    pr.add_argument("--categories", nargs="+", default=None, help="default: every category")
    pr.add_argument("--seed-offset", type=int, default=None, help="first seed (default: the gallery's own range)")
    _model_flags(pr)
    pr.add_argument("--num-points", type=int, default=4096)
    pr.add_argument("--quiet", action="store_true")

    r = sub.add_parser("embed-ray", help="embed every mesh under DIR with Ray Data; write Parquet shards")
    r.add_argument("dir")
    r.add_argument("--shards", required=True, help="output folder (shared by the cluster)")
    _model_flags(r)
    r.add_argument("--num-points", type=int, default=4096)
    r.add_argument("--up-axis", choices=["z", "y"], default="z")
    r.add_argument("--concurrency", type=int, default=1, help="actors, each with its own model (default 1)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)")
    r.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    r.add_argument("--no-thumbnails", action="store_true")

    g = sub.add_parser("ingest", help="add Parquet shards from embed-ray to a gallery")
    g.add_argument("shards")
    g.add_argument("--out", required=True)
    g.add_argument("--index", choices=["auto", "exact", "approx"], default="auto")
    g.add_argument("--quiet", action="store_true")
    return ap


def _report(report: Any, out: str) -> None:
    print(f"{out}: {report.entries} entries ({report.embedded} embedded, {report.reused} reused, "
          f"{report.resumed} resumed, {report.removed} removed) in {report.seconds:.1f} s")
    if report.skipped:
        print(f"{len(report.skipped)} files skipped; reasons in {Path(out) / 'report.json'}:")
        for s in report.skipped[:10]:
            print(f"  {s['path']}: {s['reason']}")
        if len(report.skipped) > 10:
            print(f"  ... and {len(report.skipped) - 10} more")


def _query(args: argparse.Namespace) -> int:
    import numpy as np

    from .embed import load_embedder
    from .search import Filters, search, search_image, search_text
    from .store import GalleryStore

    store = GalleryStore(args.gallery, shards=None if args.threads is None else max(1, args.threads))
    filters = Filters(category=args.category, min_faces=args.min_faces, max_faces=args.max_faces,
                      min_score=args.min_score)
    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    if args.vector is not None:
        hits = search(store, np.load(args.vector, allow_pickle=False), k=args.k, filters=filters)
    else:
        source = store.source or {}
        provider = args.provider or source.get("provider") or "tango3d"
        checkpoint = args.checkpoint if args.checkpoint is not None else source.get("checkpoint")
        embedder = load_embedder(checkpoint=checkpoint, provider=provider, device=args.device,
                                 **{k: v for k, v in store.settings.items() if k in ("num_points", "seed")})
        store.check_model(embedder.fingerprint, what=f"the query model ({provider}, checkpoint {checkpoint or 'bundled'})")
        if args.text is not None:
            hits = search_text(store, args.text, embedder, k=args.k, filters=filters)
        else:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(args.image) as im:
                    image = im.convert("RGB")
            except (OSError, UnidentifiedImageError) as e:
                raise ValueError(f"--image {args.image}: not a readable image ({e})") from None
            hits = search_image(store, image, embedder, k=args.k, filters=filters)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1, ensure_ascii=False))
    else:
        if not hits:
            print("no hits")
        for h in hits:
            extra = f"  [{h.category}]" if h.category else ""
            print(f"{h.rank + 1:3d}  {h.score:+.4f}  {h.path}{extra}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .embed import ModelMismatchError
    from .store import GalleryBusyError, GalleryError

    try:
        if args.command == "build":
            from .build import build_gallery
            from .embed import load_embedder

            report = build_gallery(args.dir, args.out, load_embedder(checkpoint=args.checkpoint, provider=args.provider,
                                                                      device=args.device, num_points=args.num_points),
                                   up_axis=args.up_axis, dense=args.dense, thumbnails=not args.no_thumbnails,
                                   chunk_size=args.chunk_size, metadata=args.metadata, rehash=args.rehash,
                                   reembed=args.reembed, retry_failed=args.retry_failed, index=args.index,
                                   progress=not args.quiet)
            _report(report, args.out)
            return 0
        if args.command == "query":
            return _query(args)
        if args.command == "info":
            from .store import GalleryStore

            store = GalleryStore(args.gallery)
            m = dict(store.manifest)
            m["path"] = str(store.path)
            print(json.dumps(m, indent=1, ensure_ascii=False))
            return 0
        if args.command == "procedural":
            from .embed import load_embedder
            from .procedural import GALLERY_SEED_OFFSET, build_procedural

            report = build_procedural(args.out, load_embedder(checkpoint=args.checkpoint, provider=args.provider,
                                                              device=args.device, num_points=args.num_points),
                                      per_category=args.per_category, categories=args.categories,
                                      seed_offset=GALLERY_SEED_OFFSET if args.seed_offset is None else args.seed_offset,
                                      progress=not args.quiet)
            _report(report, args.out)
            return 0
        if args.command == "embed-ray":
            from .distributed import embed_with_ray

            init: dict[str, Any] = {}
            if args.address:
                init["address"] = args.address
            if args.num_cpus:
                init["num_cpus"] = args.num_cpus
            out = embed_with_ray(args.dir, args.shards, checkpoint=args.checkpoint, provider=args.provider,
                                 device=args.device, num_points=args.num_points, up_axis=args.up_axis,
                                 thumbnails=not args.no_thumbnails, batch_size=args.batch_size,
                                 concurrency=args.concurrency, cpus_per_worker=args.cpus_per_worker, ray_init=init)
            print(f"shards written to {out}; next: python -m tango3d_core.gallery ingest {out} --out GALLERY")
            return 0
        if args.command == "ingest":
            from .distributed import ingest_shards

            report = ingest_shards(args.shards, args.out, index=args.index, progress=not args.quiet)
            _report(report, args.out)
            return 0
    except (GalleryError, GalleryBusyError, ModelMismatchError, FileNotFoundError, FileExistsError, ValueError,
            ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover - argparse restricts it


if __name__ == "__main__":
    sys.exit(main())
