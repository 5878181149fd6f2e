"""Experiment (issue #3): is the category in the frozen features, and does the pooling read it?

    python docs/experiments/probe_pooling.py image runs/tiny/0_pretrain/latest
    python docs/experiments/probe_pooling.py shape runs/tiny/0_pretrain/latest
    python docs/experiments/probe_pooling.py shape assets/checkpoint

Encodes training examples with a frozen checkpoint (image: the ViT's CLS token and patch map of
4 080 augmented views; shape: the VAE's decoded latent tokens of 2 yaws x 680 shapes), then
fits small category classifiers (17 classes) on 4 of every 5 shapes and reports accuracy on the
held-out fifth, per pooling. The global heads pool exactly like ``mean``. A lab record, not
part of the package: see docs/experiments/levers_2026-12-01.md.
"""
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from tango3d_core.data.dataset import ShardDataset
from tango3d_core.models.checkpoint import load_model

branch, ckpt = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(1)
model = load_model(ckpt).eval()
ds = ShardDataset("data_cache/train", "train", num_points=2048, num_occ=16)
if branch == "image":
    idx = list(range(len(ds)))
else:
    idx = [s * ds.views_per_shape + v for s in range(ds.num_shapes) for v in range(2)]
feats, labels, shape_ids = [], [], []
with torch.inference_mode():
    for b in DataLoader(Subset(ds, idx), batch_size=32, num_workers=1):
        if branch == "image":
            o = model.image_encoder(b["image"])
            # [B, 1 + h*w, C]: the CLS token, then the patch tokens
            feats.append(torch.cat([o["global_token"][:, None], o["patch_map"].flatten(2).transpose(1, 2)], 1))
        else:
            enc = model.shape_vae.encode(b["points"], b["normals"])
            feats.append(model.shape_vae.decode(enc["mean"]))  # [B, L, W]
        labels.append(b["category_index"])
        shape_ids.append(b["shape_index"])
X, Y, S = torch.cat(feats).float(), torch.cat(labels), torch.cat(shape_ids)
held = S % 5 == 0
C, K = X.shape[-1], int(Y.max()) + 1


class AttentionPool(nn.Module):
    def __init__(self, queries: int = 4) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.randn(queries, C) * 0.02)
        self.norm = nn.LayerNorm(C)
        self.attn = nn.MultiheadAttention(C, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.attn(self.q.expand(len(x), -1, -1), x, x)[0].flatten(1)


tokens = X[:, 1:] if branch == "image" else X
pools = {"mean": torch.cat([X[:, 0], tokens.mean(1)], -1) if branch == "image" else tokens.mean(1),
         "max": tokens.amax(1),
         "mean||max": torch.cat([tokens.mean(1), tokens.amax(1)], -1),
         "mean||std": torch.cat([tokens.mean(1), tokens.std(1)], -1)}
for name, P in [*pools.items(), ("attention", None)]:
    torch.manual_seed(0)
    pool = AttentionPool() if P is None else nn.Identity()
    dim = 4 * C if P is None else P.shape[-1]
    head = nn.Sequential(pool, nn.LayerNorm(dim), nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, K))
    inputs = X if P is None else P
    opt = torch.optim.AdamW(head.parameters(), 1e-3, weight_decay=0.05)
    train_idx = (~held).nonzero()[:, 0]
    for _ in range(40 if P is None else 150):
        perm = train_idx[torch.randperm(len(train_idx))]
        for i in range(0, len(perm), 64):
            j = perm[i:i + 64]
            loss = F.cross_entropy(head(inputs[j]), Y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = lambda m: (head(inputs[m]).argmax(1) == Y[m]).float().mean().item()  # noqa: E731
        print(f"{branch} {ckpt} {name:<10} train {acc(~held):.3f} held-out {acc(held):.3f}", flush=True)
