"""Furniture families: chair, table, sofa, bed, shelf, lamp.

Conventions shared by every family here (see ``_base`` for the canonical pose):
    * Design units are metres, Z up, the floor is z = 0, the object's front
      (where a person sits, the foot of a bed, the open side of a shelf) faces -Y.
    * Each family first draws its overall dimensions, estimates its bounding-box
      diagonal and derives ``res`` (target edge length) from it, so every part is
      meshed at about the same density after normalisation.
    * Every part is a closed primitive; parts may overlap (the shape is their union).
    * Colours are never chosen here: ``ShapeBuilder.material`` draws them per part,
      independently of the part, so colour does not reveal the part.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import trimesh

from ._base import (
    NUMBER_WORDS,
    _pick,
    _res,
    _u,
    ShapeBuilder,
    ball,
    beam,
    caption,
    colour_word,
    loft,
    revolve,
    rot,
    rounded_box,
    superellipse,
    transformed,
    tube,
    register,
)

def _leg(
    style: str,
    top: Sequence[float],
    bottom: Sequence[float],
    width: float,
    *,
    res: float,
    taper: float = 0.7,
) -> trimesh.Trimesh:
    """One leg from ``top`` to ``bottom`` in the given style ('square', 'round', 'turned')."""
    top, bottom = np.asarray(top, dtype=np.float64), np.asarray(bottom, dtype=np.float64)
    if style == "square":
        return beam(bottom, top, width, res=res, radius=0.15 * width)
    if style == "round":
        return tube([top, bottom], [width / 2, width / 2 * taper], res=res)
    # 'turned': a lathe profile with a bead and a taper, revolved about the leg axis.
    length = float(np.linalg.norm(top - bottom))
    r = width / 2
    prof = np.array(
        [
            [r * 0.75, 0.0],
            [r * 0.6, 0.35 * length],
            [r * 0.95, 0.62 * length],
            [r * 1.15, 0.70 * length],
            [r * 0.8, 0.78 * length],
            [r, 0.84 * length],
            [r, length],
        ]
    )
    return revolve(prof, res=res, axis=top - bottom, origin=bottom)


# ============================================================== chair

CHAIR_PARTS = ["seat", "back", "leg", "armrest"]


@register("chair", CHAIR_PARTS)
def chair(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("chair", CHAIR_PARTS, rng)
    base = _pick(rng, ["legs", "swivel", "sled"], [0.6, 0.25, 0.15])
    seat_shape = "round" if base != "sled" and rng.random() < 0.25 else "square"
    W = _u(rng, 0.40, 0.60)
    D = W if seat_shape == "round" else _u(rng, 0.38, 0.55)
    Hs = _u(rng, 0.40, 0.52) if base == "swivel" else _u(rng, 0.38, 0.50)
    t = _u(rng, 0.03, 0.10)
    Hb = _u(rng, 0.25, 0.65)
    back_style = _pick(rng, ["panel", "slats", "rails", "padded"])
    arms = bool(rng.random() < (0.6 if base == "swivel" else 0.4))
    res = _res(W + (0.16 if arms else 0.0), D, Hs + Hb)

    # seat
    if seat_shape == "round":
        R = W / 2
        e = min(t / 2, 0.02)
        b.add("seat", revolve([[R - e, Hs - t], [R, Hs - t + e], [R, Hs - e], [R - e, Hs]], res=res))
    else:
        b.add("seat", rounded_box((W, D, t), (0, 0, Hs - t / 2), res=res, radius=_u(rng, 0.005, min(t / 2, 0.04))))

    # back: built upright in a local frame at the seat's rear edge, then tilted back (+Y).
    tilt = _u(rng, 0.0, 0.25)
    bt = _u(rng, 0.07, 0.12) if back_style == "padded" else _u(rng, 0.02, 0.045)
    bw = W * (_u(rng, 0.75, 1.0) if seat_shape == "square" else _u(rng, 0.6, 0.8))
    y_back = D / 2 - bt / 2 if seat_shape == "square" else np.sqrt(max((W / 2) ** 2 - (bw / 2) ** 2, 0.0)) - bt / 2
    pieces = []
    if back_style in ("panel", "padded"):
        lift = 0.0 if back_style == "padded" or rng.random() < 0.5 else _u(rng, 0.05, 0.15)
        pieces.append(
            rounded_box((bw, bt, Hb - lift), (0, 0, lift + (Hb - lift) / 2), res=res, radius=min(bt / 2, 0.04) * 0.9)
        )
        if lift > 0:
            pw = _u(rng, 0.025, 0.04)
            for s in (-1, 1):
                pieces.append(beam((s * (bw / 2 - pw / 2), 0, -t / 2), (s * (bw / 2 - pw / 2), 0, lift + 0.02),
                                   pw, bt * 0.9, res=res))
    else:
        pw = _u(rng, 0.025, 0.045)
        rail_h = _u(rng, 0.04, 0.10)
        for s in (-1, 1):
            pieces.append(beam((s * (bw / 2 - pw / 2), 0, -t / 2), (s * (bw / 2 - pw / 2), 0, Hb), pw, bt, res=res,
                               radius=0.2 * pw))
        pieces.append(rounded_box((bw, bt, rail_h), (0, 0, Hb - rail_h / 2), res=res, radius=0.3 * min(bt, rail_h)))
        inner = bw - 2 * pw
        if back_style == "slats":
            n = int(rng.integers(2, 6))
            sw = min(_u(rng, 0.02, 0.05), inner / (n + 1))
            for k in range(n):
                x = -inner / 2 + inner * (k + 1) / (n + 1)
                pieces.append(rounded_box((sw, bt * 0.7, Hb - rail_h + 0.02), (x, 0, (Hb - rail_h) / 2 + 0.01),
                                          res=res))
        else:
            n = int(rng.integers(1, 4))
            rh = _u(rng, 0.025, 0.05)
            for k in range(n):
                z = (Hb - rail_h) * (k + 1) / (n + 1.3)
                pieces.append(rounded_box((inner + 0.01, bt * 0.8, rh), (0, 0, z), res=res, radius=0.3 * rh))
    R_tilt = rot("x", -tilt)
    for m in pieces:
        b.add("back", transformed(m, rotate=R_tilt, translate=(0, y_back, Hs)))

    # base
    feats: list[str] = []
    leg_w = _u(rng, 0.025, 0.05)
    z_under = Hs - t * 0.6
    if base == "legs":
        n_legs = 3 if seat_shape == "round" and rng.random() < 0.3 else 4
        style = _pick(rng, ["square", "round", "turned"], [0.45, 0.4, 0.15])
        splay = _u(rng, 0.0, 0.06) if rng.random() < 0.5 else 0.0
        if seat_shape == "round":
            ang = -np.pi / 2 + np.pi / n_legs + 2 * np.pi * np.arange(n_legs) / n_legs
            rl = W / 2 - leg_w * 1.2
            tops = np.stack([rl * np.cos(ang), rl * np.sin(ang)], 1)
        else:
            ins = leg_w / 2 + _u(rng, 0.0, 0.04)
            xs, ys = W / 2 - ins, D / 2 - ins
            tops = np.array([[-xs, -ys], [xs, -ys], [xs, ys], [-xs, ys]])
        for xy in tops:
            out = xy / (np.linalg.norm(xy) + 1e-9) * splay
            b.add("leg", _leg(style, (xy[0], xy[1], z_under), (xy[0] + out[0], xy[1] + out[1], 0.0), leg_w, res=res))
        feats.append(f"{NUMBER_WORDS[n_legs]} legs")
        b.attributes["leg_style"] = style
    elif base == "swivel":
        n_legs = 5
        col_r = _u(rng, 0.02, 0.035)
        hub_z = _u(rng, 0.06, 0.1)
        b.add("leg", tube([(0, 0, hub_z - 0.02), (0, 0, z_under)], col_r, res=res))
        reach = _u(rng, 0.24, 0.32)
        cast = _u(rng, 0.025, 0.04)
        off = float(rng.uniform(0, 2 * np.pi / 5))
        for k in range(5):
            a = off + 2 * np.pi * k / 5
            tip = np.array([reach * np.cos(a), reach * np.sin(a), cast + 0.01])
            b.add("leg", beam((0, 0, hub_z), tip, 0.035, 0.03, res=res, radius=0.008))
            b.add("leg", ball(cast / 2 + 0.003, tip - (0, 0, cast / 2 + 0.006), res=res))
        feats.append("a swivel base with five legs")
    else:  # sled: two bent tubes, each running along the floor and up to the seat
        n_legs = 2
        r = _u(rng, 0.01, 0.018)
        for s in (-1, 1):
            x = s * (W / 2 - r * 2)
            path = [(x, -D / 2 + 0.05, z_under), (x, -D / 2 - 0.02, r), (x, D / 2, r), (x, D / 2 - 0.05, z_under)]
            b.add("leg", tube(path, r, res=res, corner=0.08))
        feats.append("a sled base")

    if arms:
        ah = _u(rng, 0.17, 0.27)
        aw = _u(rng, 0.04, 0.08)
        arm_style = _pick(rng, ["pad", "loop"])
        half = W / 2 if seat_shape == "square" else W / 2 * 0.85
        for s in (-1, 1):
            x = s * (half - aw / 2 + 0.01)
            if arm_style == "pad":
                la = D * _u(rng, 0.6, 0.9)
                y0 = D / 2 - la
                b.add("armrest", rounded_box((aw, la, 0.03), (x, D / 2 - la / 2, Hs + ah), res=res, radius=0.012))
                b.add("armrest", beam((x, y0 + 0.05, Hs - t / 2), (x, y0 + 0.05, Hs + ah), 0.03, 0.03, res=res,
                                      radius=0.006))
            else:
                path = [(x, -D / 2 + 0.07, Hs - t / 2), (x, -D / 2 + 0.03, Hs + ah), (x, D / 2 - 0.02, Hs + ah)]
                b.add("armrest", tube(path, _u(rng, 0.012, 0.02), res=res, corner=0.08))
        feats.insert(0, "armrests")

    back_words = {"panel": "a solid back", "slats": "a slatted back", "rails": "a ladder back",
                  "padded": "a padded back"}
    feats.append(back_words[back_style])
    if seat_shape == "round":
        feats.append("a round seat")
    size = "tall" if Hb > 0.55 else "wide" if W > 0.56 else "small" if W < 0.44 and Hb < 0.35 else None
    b.attributes.update(
        colour=colour_word(b, "seat"), size=size, n_legs=n_legs, armrests=arms, base=base,
        back_style=back_style, seat_shape=seat_shape,
    )
    return b.build(seed=seed, caption=caption("chair", rng, colour=colour_word(b, "seat"), size=size, features=feats))


# ============================================================== table

TABLE_PARTS = ["top", "leg", "apron", "base"]


@register("table", TABLE_PARTS)
def table(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("table", TABLE_PARTS, rng)
    shape = _pick(rng, ["rect", "round", "oval"], [0.45, 0.35, 0.2])
    use = _pick(rng, ["coffee", "side", "dining", "bar"], [0.25, 0.15, 0.45, 0.15])
    H = {"coffee": _u(rng, 0.38, 0.5), "side": _u(rng, 0.52, 0.65), "dining": _u(rng, 0.7, 0.78),
         "bar": _u(rng, 0.95, 1.08)}[use]
    if shape == "rect":
        support = _pick(rng, [4, 6], [0.5, 0.5])
    elif shape == "round":
        support = _pick(rng, [3, 4, 5, "pedestal"], [0.3, 0.2, 0.2, 0.3])
    else:
        support = _pick(rng, [4, 6, "pedestal"], [0.35, 0.35, 0.3])
    small = use in ("side", "bar")
    if shape == "rect":
        L = _u(rng, 1.6, 2.4) if support == 6 else _u(rng, 0.5, 0.9) if small else _u(rng, 0.8, 1.7)
        Wd = _u(rng, 0.4, 0.6) if small else _u(rng, 0.5, min(1.0, 0.85 * L))
    elif shape == "round":
        L = Wd = 2 * (_u(rng, 0.22, 0.35) if small else _u(rng, 0.35, 0.65))
    else:
        L = _u(rng, 1.5, 2.2) if support == 6 else _u(rng, 0.9, 1.6)
        Wd = L * _u(rng, 0.45, 0.7)
    tt = _u(rng, 0.02, 0.06)
    res = _res(L, Wd, H)
    feats: list[str] = []

    # top
    if shape == "rect":
        b.add("top", rounded_box((L, Wd, tt), (0, 0, H - tt / 2), res=res, radius=_u(rng, 0.003, min(tt / 2, 0.06))))
    elif shape == "round":
        e = min(tt / 3, 0.01)
        R = L / 2
        b.add("top", revolve([[R - e, H - tt], [R, H - tt + e], [R, H - e], [R - e, H]], res=res))
        feats.append("a round top")
    else:
        ex = _u(rng, 2.0, 3.5)
        count = max(32, int(np.ceil(np.pi * L / res)))
        loops = []
        for z, shrink in ((H - tt, 0.006), (H - tt * 0.85, 0.0), (H - tt * 0.15, 0.0), (H, 0.006)):
            xy = superellipse(L / 2 - shrink, Wd / 2 - shrink, count=count, exponent=ex)
            loops.append(np.c_[xy, np.full(count, z)])
        b.add("top", loft(loops, res=res))
        feats.append("an oval top")

    z_top_under = H - tt
    if support == "pedestal":
        n_legs = 1
        col_r = _u(rng, 0.035, 0.08) * (0.8 if small else 1.0)
        base_h = _u(rng, 0.03, 0.06)
        if rng.random() < 0.5:
            prof = [[col_r * 1.3, base_h * 0.5], [col_r, base_h + 0.1], [col_r * 0.8, 0.5 * H],
                    [col_r * 0.9, z_top_under - 0.06], [col_r * 1.6, z_top_under + 0.005]]
            b.add("leg", revolve(prof, res=res))
        else:
            b.add("leg", tube([(0, 0, base_h * 0.5), (0, 0, z_top_under + 0.005)], col_r, res=res))
        reach = min(L, Wd) * _u(rng, 0.3, 0.42)
        if rng.random() < 0.5:
            e = base_h * 0.4
            b.add("base", revolve([[reach, 0.0], [reach, base_h - e], [reach - e, base_h], [col_r, base_h + 0.02]],
                                  res=res))
            feats.append("a central pedestal on a round base")
        else:
            nf = int(_pick(rng, [3, 4]))
            off = _u(rng, 0, np.pi)
            for k in range(nf):
                a = off + 2 * np.pi * k / nf
                tip = (reach * np.cos(a), reach * np.sin(a), base_h * 0.5)
                b.add("base", beam((0, 0, base_h * 1.5), tip, _u(rng, 0.04, 0.07), base_h, res=res, radius=0.01))
            feats.append(f"a central pedestal with {NUMBER_WORDS[nf]} feet")
        b.attributes["pedestal"] = True
    else:
        n_legs = int(support)
        style = _pick(rng, ["square", "round", "turned"], [0.45, 0.35, 0.2])
        lw = _u(rng, 0.03, 0.07)
        splay = _u(rng, 0.02, 0.08) if rng.random() < 0.3 else 0.0
        ah = _u(rng, 0.05, 0.12) if use != "coffee" else _u(rng, 0.04, 0.08)
        at = _u(rng, 0.015, 0.025)
        if shape == "round":
            Rl = L / 2 - _u(rng, 0.06, 0.15)
            ang = -np.pi / 2 + 2 * np.pi * np.arange(n_legs) / n_legs
            xy = np.stack([Rl * np.cos(ang), Rl * np.sin(ang)], 1)
        elif shape == "oval":
            ang = np.array([np.pi / 4, 3 * np.pi / 4, 5 * np.pi / 4, 7 * np.pi / 4]) if n_legs == 4 else \
                np.array([np.pi / 5, np.pi / 2, 4 * np.pi / 5, 6 * np.pi / 5, 3 * np.pi / 2, 9 * np.pi / 5])
            xy = np.stack([(L / 2 - 0.12) * np.cos(ang), (Wd / 2 - 0.1) * np.sin(ang)], 1)
            xy = xy[np.argsort(np.arctan2(xy[:, 1], xy[:, 0]))]
        else:
            ins = lw / 2 + _u(rng, 0.02, 0.1)
            xs, ys = L / 2 - ins, Wd / 2 - ins
            corners = [(-xs, -ys), (xs, -ys), (xs, ys), (-xs, ys)]
            if n_legs == 6:
                corners = [(-xs, -ys), (0.0, -ys), (xs, -ys), (xs, ys), (0.0, ys), (-xs, ys)]
            xy = np.asarray(corners)
        for p in xy:
            out = p / (np.linalg.norm(p) + 1e-9) * splay
            b.add("leg", _leg(style, (p[0], p[1], z_top_under + 0.005), (p[0] + out[0], p[1] + out[1], 0.0), lw,
                              res=res))
        # apron: a ring (round tables) or boards between consecutive legs
        z_ap = z_top_under - ah / 2 + 0.003
        if shape == "round":
            Ra = float(np.linalg.norm(xy[0]))
            b.add("apron", revolve([[Ra - at / 2, z_ap - ah / 2], [Ra + at / 2, z_ap - ah / 2],
                                    [Ra + at / 2, z_ap + ah / 2], [Ra - at / 2, z_ap + ah / 2]],
                                   res=res, closed=True))
        else:
            for i in range(len(xy)):
                p, q = xy[i], xy[(i + 1) % len(xy)]
                if np.linalg.norm(q - p) < 1e-6:
                    continue
                b.add("apron", beam((p[0], p[1], z_ap), (q[0], q[1], z_ap), at, ah, res=res))
        feats.append(f"{NUMBER_WORDS[n_legs]} legs")
        b.attributes.update(leg_style=style, pedestal=False)
    size = {"coffee": "low", "side": "small", "dining": None, "bar": "tall"}[use]
    if size is None and L > 1.7:
        size = "long"
    b.attributes.update(colour=colour_word(b, "top"), size=size, n_legs=n_legs, top_shape=shape, use=use)
    return b.build(seed=seed, caption=caption("table", rng, colour=colour_word(b, "top"), size=size, features=feats))


# ============================================================== sofa

SOFA_PARTS = ["seat", "back", "armrest", "base", "leg", "pillow"]


@register("sofa", SOFA_PARTS)
def sofa(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("sofa", SOFA_PARTS, rng)
    n_seats = int(_pick(rng, [2, 3, 4], [0.4, 0.45, 0.15]))
    sw = _u(rng, 0.5, 0.7)
    arms = bool(rng.random() < 0.85)
    aw = _u(rng, 0.1, 0.25) if arms else 0.0
    D = _u(rng, 0.8, 1.0)
    leg_h = 0.0 if rng.random() < 0.3 else _u(rng, 0.05, 0.18)
    base_h = _u(rng, 0.12, 0.24)
    ct = _u(rng, 0.1, 0.18)
    bt = _u(rng, 0.14, 0.25)
    back_h = _u(rng, 0.3, 0.55)
    chaise = bool(n_seats >= 3 and rng.random() < 0.3)
    ext = _u(rng, 0.45, 0.7) if chaise else 0.0
    side = 1 if rng.random() < 0.5 else -1
    L_in = n_seats * sw
    L = L_in + 2 * aw
    z_seat = leg_h + base_h
    z_top = z_seat + ct
    res = _res(L, D + ext, z_top + back_h, frac=0.017)
    feats: list[str] = []
    r_soft = _u(rng, 0.02, 0.06)

    # base (frame under the cushions) and optional chaise extension
    b.add("base", rounded_box((L, D, base_h), (0, 0, leg_h + base_h / 2), res=res, radius=0.02))
    y_front = -D / 2
    if chaise:
        xc = side * (L_in / 2 - sw / 2)
        b.add("base", rounded_box((sw, ext + 0.05, base_h), (xc, -D / 2 - ext / 2 + 0.025, leg_h + base_h / 2),
                                  res=res, radius=0.02))
        feats.append("a chaise")
    # seat cushions: one bench cushion or one per seat
    bench = rng.random() < 0.3
    seat_d = D - bt
    if bench:
        b.add("seat", rounded_box((L_in, seat_d, ct), (0, y_front + seat_d / 2, z_seat + ct / 2), res=res,
                                  radius=r_soft))
        if chaise:
            b.add("seat", rounded_box((sw - 0.01, ext, ct), (side * (L_in / 2 - sw / 2), y_front - ext / 2 + 0.01,
                                                             z_seat + ct / 2), res=res, radius=r_soft))
    else:
        for k in range(n_seats):
            x = -L_in / 2 + sw * (k + 0.5)
            dd = seat_d + (ext if chaise and abs(x - side * (L_in / 2 - sw / 2)) < 1e-6 else 0.0)
            b.add("seat", rounded_box((sw - 0.01, dd, ct), (x, y_front + seat_d - dd / 2, z_seat + ct / 2), res=res,
                                      radius=r_soft))
    # back: frame plus optional loose back cushions
    b.add("back", rounded_box((L, bt, z_top + back_h - leg_h), (0, D / 2 - bt / 2, (leg_h + z_top + back_h) / 2),
                              res=res, radius=_u(rng, 0.02, 0.07)))
    if rng.random() < 0.5:
        cd = _u(rng, 0.1, 0.18)
        nb = 1 if bench else n_seats
        cw = L_in / nb
        for k in range(nb):
            x = -L_in / 2 + cw * (k + 0.5)
            m = rounded_box((cw - 0.02, cd, back_h * 0.9), (0, 0, 0), res=res, radius=min(cd / 2, 0.06) * 0.9)
            b.add("back", transformed(m, rotate=rot("x", -0.15),
                                      translate=(x, D / 2 - bt - cd / 2 + 0.03, z_top + back_h * 0.45)))
        feats.append("back cushions")
    # armrests
    if arms:
        arm_style = _pick(rng, ["square", "rolled", "slim"])
        ah = z_top + _u(rng, 0.08, 0.25)
        ad = D + (ext if chaise else 0.0)
        for s in (-1, 1):
            dd = ad if chaise and s == side else D
            x = s * (L / 2 - aw / 2)
            radius = {"square": 0.02, "rolled": min(aw / 2, 0.1), "slim": 0.01}[arm_style]
            b.add("armrest", rounded_box((aw, dd, ah - leg_h), (x, D / 2 - dd / 2, leg_h + (ah - leg_h) / 2),
                                         res=res, radius=radius))
        feats.insert(0, "armrests")
    # legs
    n_legs = 0
    if leg_h > 0:
        n_legs = 6 if n_seats >= 3 and rng.random() < 0.5 else 4
        style = _pick(rng, ["square", "round", "bun"])
        lw = _u(rng, 0.03, 0.06)
        xs, ys = L / 2 - 0.06, D / 2 - 0.06
        xy = [(-xs, -ys), (xs, -ys), (xs, ys), (-xs, ys)] + ([(0, -ys), (0, ys)] if n_legs == 6 else [])
        if chaise:
            xy.append((side * (L_in / 2 - 0.06), -D / 2 - ext + 0.06))
            n_legs += 1
        for x, y in xy:
            if style == "bun":
                r = max(lw, leg_h / 2)
                b.add("leg", revolve([[r * 0.6, 0], [r, leg_h * 0.5], [r * 0.7, leg_h + 0.01]], res=res,
                                     origin=(x, y, 0)))
            else:
                b.add("leg", _leg(style, (x, y, leg_h + 0.01), (x, y, 0), lw, res=res, taper=0.6))
        feats.append(f"{NUMBER_WORDS[n_legs]} short legs")
    # throw pillows
    n_pillows = int(_pick(rng, [0, 1, 2], [0.5, 0.2, 0.3]))
    for k in range(n_pillows):
        s = (-1, 1)[k] if n_pillows == 2 else (1 if rng.random() < 0.5 else -1)
        ps = _u(rng, 0.3, 0.42)
        m = rounded_box((ps, _u(rng, 0.1, 0.15), ps), res=res, radius=0.05)
        m = transformed(m, rotate=rot("y", s * 0.3) @ rot("x", -0.25))
        b.add("pillow", transformed(m, translate=(s * (L_in / 2 - ps / 2 - 0.02), D / 2 - bt - 0.08,
                                                  z_top + ps / 2 - 0.03)))
    if n_pillows:
        feats.append("a throw pillow" if n_pillows == 1 else "two throw pillows")
    size = {2: "compact", 3: None, 4: "long"}[n_seats]
    seat_words = {2: "two-seat", 3: "three-seat", 4: "four-seat"}
    b.attributes.update(colour=colour_word(b, "seat"), size=size, n_seats=n_seats, armrests=arms, n_legs=n_legs,
                        chaise=chaise, n_pillows=n_pillows)
    cap = caption(f"{seat_words[n_seats]} sofa", rng, colour=colour_word(b, "seat"), size=size, features=feats)
    return b.build(seed=seed, caption=cap)


# ============================================================== bed

BED_PARTS = ["frame", "mattress", "headboard", "footboard", "leg", "pillow"]


@register("bed", BED_PARTS)
def bed(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("bed", BED_PARTS, rng)
    kind = _pick(rng, ["single", "double", "king"], [0.35, 0.45, 0.2])
    W = {"single": _u(rng, 0.85, 1.0), "double": _u(rng, 1.35, 1.6), "king": _u(rng, 1.75, 2.0)}[kind]
    L = _u(rng, 1.95, 2.15)
    platform = bool(rng.random() < 0.3)
    leg_h = 0.0 if platform else _u(rng, 0.08, 0.25)
    fh = _u(rng, 0.12, 0.3) if platform else _u(rng, 0.1, 0.2)
    ft = _u(rng, 0.03, 0.07)
    mt = _u(rng, 0.15, 0.3)
    hb_style = _pick(rng, ["panel", "arched", "posts", "slatted", "padded"])
    hb_h = _u(rng, 0.3, 0.8)
    FW, FL = W + 2 * ft, L + 2 * ft
    z_frame = leg_h + fh
    z_mat = z_frame - 0.02 + mt
    res = _res(FW, FL, z_mat + hb_h, frac=0.017)
    feats: list[str] = []

    # frame: a platform block, or rails around a thin deck
    if platform:
        b.add("frame", rounded_box((FW, FL, fh), (0, 0, fh / 2), res=res, radius=0.015))
    else:
        for s in (-1, 1):
            b.add("frame", rounded_box((ft, FL, fh), (s * (FW / 2 - ft / 2), 0, leg_h + fh / 2), res=res,
                                       radius=0.008))
            b.add("frame", rounded_box((FW - 2 * ft + 0.01, ft, fh), (0, s * (FL / 2 - ft / 2), leg_h + fh / 2),
                                       res=res, radius=0.008))
        b.add("frame", rounded_box((W, L, 0.025), (0, 0, z_frame - 0.04), res=res))
    b.add("mattress", rounded_box((W, L, mt), (0, 0, z_frame - 0.02 + mt / 2), res=res,
                                  radius=_u(rng, 0.02, min(0.08, mt / 2))))

    # headboard at the back (+Y)
    hbt = _u(rng, 0.04, 0.1)
    y_hb = FL / 2 + hbt / 2 - 0.01
    top = z_mat + hb_h
    if hb_style in ("panel", "padded"):
        rad = min(hbt / 2, 0.05) * 0.95 if hb_style == "padded" else 0.01
        b.add("headboard", rounded_box((FW, hbt, top - leg_h), (0, y_hb, (top + leg_h) / 2), res=res, radius=rad))
    elif hb_style == "arched":
        bump = _u(rng, 0.08, 0.25)
        count = max(48, int(np.ceil(2 * (FW + top) / res)))
        # outline in the XZ plane: flat bottom, straight sides, a raised arch on top
        xs = np.linspace(-FW / 2, FW / 2, 64)
        z_arch = top - bump + bump * np.cos(np.pi * xs / FW)
        outline = np.concatenate([
            np.stack([xs, z_arch], 1)[::-1],
            [[-FW / 2, leg_h], [FW / 2, leg_h]],
        ])
        outline = _uniform_loop(outline, count)
        loops = [np.c_[outline[:, 0], np.full(count, y), outline[:, 1]] for y in (y_hb - hbt / 2, y_hb + hbt / 2)]
        b.add("headboard", loft(loops, res=res))
        feats.append("an arched headboard")
    else:
        pw = _u(rng, 0.05, 0.09)
        post_top = top + (_u(rng, 0.03, 0.12) if hb_style == "posts" else 0.0)
        for s in (-1, 1):
            b.add("headboard", beam((s * (FW / 2 - pw / 2), y_hb, 0.0), (s * (FW / 2 - pw / 2), y_hb, post_top), pw,
                                    res=res, radius=0.01))
        if hb_style == "posts":
            b.add("headboard", rounded_box((FW - 2 * pw + 0.02, hbt * 0.6, hb_h * 0.8),
                                           (0, y_hb, z_mat + hb_h * 0.5), res=res, radius=0.01))
        else:
            rail = _u(rng, 0.05, 0.1)
            b.add("headboard", rounded_box((FW - 2 * pw + 0.02, hbt, rail), (0, y_hb, top - rail / 2), res=res,
                                           radius=0.01))
            n = max(3, int(W / _u(rng, 0.12, 0.25)))
            inner = FW - 2 * pw
            for k in range(n):
                x = -inner / 2 + inner * (k + 1) / (n + 1)
                b.add("headboard", rounded_box((0.03, hbt * 0.6, top - rail - z_frame + 0.02),
                                               (x, y_hb, (top - rail + z_frame) / 2), res=res, radius=0.005))
            feats.append("a slatted headboard")
    if hb_style == "padded":
        feats.append("a padded headboard")
    # optional footboard at the front (-Y)
    footboard = bool(rng.random() < 0.35)
    if footboard:
        fb_h = z_mat + _u(rng, -0.05, 0.25)
        b.add("footboard", rounded_box((FW, hbt * 0.8, fb_h - leg_h), (0, -y_hb + 0.005, (fb_h + leg_h) / 2),
                                       res=res, radius=0.01))
        feats.append("a footboard")
    # legs
    n_legs = 0
    if not platform:
        n_legs = 6 if W > 1.3 and rng.random() < 0.5 else 4
        lw = _u(rng, 0.04, 0.07)
        style = _pick(rng, ["square", "round", "turned"])
        xs, ys = FW / 2 - lw / 2, FL / 2 - lw / 2
        xy = [(-xs, -ys), (xs, -ys), (xs, ys), (-xs, ys)] + ([(-xs, 0.0), (xs, 0.0)] if n_legs == 6 else [])
        for x, y in xy:
            b.add("leg", _leg(style, (x, y, leg_h + 0.01), (x, y, 0.0), lw, res=res))
        feats.append(f"{NUMBER_WORDS[n_legs]} legs")
    # pillows at the head end
    n_pillows = {"single": 1, "double": 2, "king": int(_pick(rng, [2, 3]))}[kind]
    if rng.random() < 0.15:
        n_pillows = 0
    if n_pillows:
        pw_ = min(_u(rng, 0.5, 0.7), (W - 0.06) / n_pillows)
        pl, ph = _u(rng, 0.3, 0.45), _u(rng, 0.1, 0.16)
        for k in range(n_pillows):
            x = -W / 2 + W * (k + 0.5) / n_pillows
            m = rounded_box((pw_ - 0.03, pl, ph), res=res, radius=ph * 0.45)
            b.add("pillow", transformed(m, rotate=rot("x", -0.12), translate=(x, L / 2 - pl / 2 - 0.05,
                                                                              z_mat + ph * 0.35)))
        feats.append("a pillow" if n_pillows == 1 else f"{NUMBER_WORDS[n_pillows]} pillows")
    size = {"single": "narrow", "double": None, "king": "wide"}[kind]
    b.attributes.update(colour=colour_word(b, "mattress"), size=size, bed_size=kind, n_legs=n_legs,
                        n_pillows=n_pillows, footboard=footboard, headboard_style=hb_style, platform=platform)
    cap = caption(f"{kind} bed", rng, colour=colour_word(b, "mattress"), size=size, features=feats)
    return b.build(seed=seed, caption=cap)


def _uniform_loop(points: np.ndarray, count: int) -> np.ndarray:
    """Resample a closed 2D polyline [K, 2] to ``count`` points evenly spaced by arc length."""
    closed = np.concatenate([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    want = np.linspace(0, arc[-1], count, endpoint=False)
    return np.stack([np.interp(want, arc, closed[:, 0]), np.interp(want, arc, closed[:, 1])], 1)


# ============================================================== shelf

SHELF_PARTS = ["side", "board", "back", "leg"]


@register("shelf", SHELF_PARTS)
def shelf(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("shelf", SHELF_PARTS, rng)
    style = _pick(rng, ["panel", "frame"], [0.65, 0.35])
    W = _u(rng, 0.5, 1.4)
    D = _u(rng, 0.22, 0.42)
    H = _u(rng, 0.6, 2.0)
    n_boards = int(np.clip(round(H / _u(rng, 0.28, 0.45)) + 1, 2, 6))
    bt = _u(rng, 0.015, 0.03)
    legs = bool(style == "panel" and rng.random() < 0.35)
    # a back (panel or braces) unless legs give the shelf its third part
    back = bool(rng.random() < 0.6) or (style == "frame") or not legs
    leg_h = _u(rng, 0.05, 0.2) if legs else 0.0
    res = _res(W, D, H, frac=0.017)
    feats: list[str] = []

    z0 = leg_h
    if style == "panel":
        st = _u(rng, 0.015, 0.03)
        for s in (-1, 1):
            b.add("side", rounded_box((st, D, H - z0), (s * (W / 2 - st / 2), 0, (H + z0) / 2), res=res, radius=0.003))
        inner = W - 2 * st + 0.004
    else:
        pw = _u(rng, 0.02, 0.04)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.add("side", beam((sx * (W / 2 - pw / 2), sy * (D / 2 - pw / 2), 0.0),
                                   (sx * (W / 2 - pw / 2), sy * (D / 2 - pw / 2), H), pw, res=res, radius=0.004))
        inner = W - 0.004
    # boards: the bottom one just above the floor (or legs), the top one flush with the sides
    z_bottom = z0 + (bt / 2 if legs else _u(rng, 0.02, 0.1))
    heights = np.linspace(z_bottom, H - bt / 2, n_boards)
    if n_boards > 2 and rng.random() < 0.3:
        gaps = rng.uniform(0.6, 1.4, n_boards - 1)
        heights = z_bottom + np.concatenate([[0.0], np.cumsum(gaps) / gaps.sum()]) * (H - bt / 2 - z_bottom)
    for z in heights:
        b.add("board", rounded_box((inner, D - 0.005, bt), (0, -0.0025, z), res=res, radius=0.002))
    feats.append(f"{NUMBER_WORDS[n_boards]} boards")
    # back: a thin panel, or crossed braces on open frames
    back_kind = "none"
    if back:
        if style == "frame" and rng.random() < 0.6:
            back_kind = "braces"
            y = D / 2 - 0.01
            bw = _u(rng, 0.012, 0.02)
            for s in (-1, 1):
                b.add("back", beam((-s * (W / 2 - 0.02), y, z0 + 0.03), (s * (W / 2 - 0.02), y, H - 0.03), bw, 0.008,
                                   res=res))
            feats.append("cross braces at the back")
        else:
            back_kind = "panel"
            pt = _u(rng, 0.005, 0.012)
            b.add("back", rounded_box((W - 0.004, pt, H - z0 - 0.004), (0, D / 2 - pt / 2, (H + z0) / 2), res=res))
            feats.append("a back panel")
    else:
        feats.append("an open back")
    n_legs = 0
    if legs:
        n_legs = 4
        lw = _u(rng, 0.025, 0.045)
        style_l = _pick(rng, ["square", "round"])
        splay = _u(rng, 0.0, 0.04)
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (W / 2 - lw), sy * (D / 2 - lw)
                b.add("leg", _leg(style_l, (x, y, leg_h + 0.01), (x + sx * splay, y + sy * splay * 0.5, 0.0), lw,
                                  res=res))
        feats.append("four legs")
    size = "tall" if H > 1.5 else "wide" if W > 1.1 else "low" if H < 0.9 else None
    b.attributes.update(colour=colour_word(b, "board"), size=size, n_boards=n_boards, back=back_kind, n_legs=n_legs,
                        style=style)
    return b.build(seed=seed, caption=caption("shelf", rng, colour=colour_word(b, "board"), size=size,
                                              features=feats))


# ============================================================== lamp

LAMP_PARTS = ["base", "stem", "shade", "bulb"]


def _shade(kind: str, r_bot: float, r_top: float, h: float, th: float, *, res: float,
           axis: Sequence[float], origin: Sequence[float]):
    """A hollow lamp shade wall (closed profile revolved), opening at the local z = 0 end."""
    if kind == "dome":
        a = np.linspace(0, np.pi / 2 * 0.85, 14)
        outer = np.stack([r_bot * np.cos(a), h * np.sin(a)], 1)
        inner = np.stack([(r_bot - th) * np.cos(a[::-1]), (h - th) * np.sin(a[::-1])], 1)
        prof = np.concatenate([outer, inner])
    else:
        prof = np.array([[r_bot, 0.0], [r_top, h], [r_top - th, h], [r_bot - th, 0.0]])
    return revolve(prof, res=res, closed=True, axis=axis, origin=origin)


@register("lamp", LAMP_PARTS)
def lamp(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("lamp", LAMP_PARTS, rng)
    kind = _pick(rng, ["table", "floor", "arm"], [0.4, 0.3, 0.3])
    # a drum on an adjustable arm reads as a box, so arm lamps use pointed shades
    shade_kind = _pick(rng, ["cone", "dome"]) if kind == "arm" else _pick(rng, ["drum", "cone", "empire", "dome"])
    if kind == "floor":
        H = _u(rng, 1.3, 1.8)
        sr = _u(rng, 0.16, 0.28)
    elif kind == "table":
        H = _u(rng, 0.35, 0.7)
        sr = H * _u(rng, 0.25, 0.4)
    else:
        H = _u(rng, 0.4, 0.65)
        sr = _u(rng, 0.06, 0.1)
    sh = sr * _u(rng, 0.8, 1.3) if shade_kind != "dome" else sr * _u(rng, 0.6, 0.9)
    r_top = {"drum": 1.0, "cone": _u(rng, 0.3, 0.55), "empire": _u(rng, 0.55, 0.8), "dome": 1.0}[shade_kind] * sr
    th = max(0.003, 0.03 * sr)
    res = _res(2 * max(sr, 0.15), 2 * max(sr, 0.15), H)
    feats: list[str] = []

    # base
    base_kind = _pick(rng, ["disc", "square", "tripod", "urn"], [0.4, 0.2, 0.2 if kind == "floor" else 0.0,
                                                                   0.2 if kind == "table" else 0.0])
    stem_r = _u(rng, 0.008, 0.018) * (1.5 if kind == "floor" else 1.0)
    if base_kind == "disc":
        br = _u(rng, 0.07, 0.16) * (1.4 if kind == "floor" else 1.0)
        bh = _u(rng, 0.015, 0.04)
        b.add("base", revolve([[br, 0.0], [br, bh * 0.6], [br * 0.85, bh], [stem_r * 2, bh * 1.2]], res=res))
        z_stem = bh
    elif base_kind == "square":
        bs = _u(rng, 0.12, 0.22) * (1.3 if kind == "floor" else 1.0)
        bh = _u(rng, 0.02, 0.05)
        b.add("base", rounded_box((bs, bs, bh), (0, 0, bh / 2), res=res, radius=0.01))
        z_stem = bh
    elif base_kind == "urn":
        br = _u(rng, 0.06, 0.12)
        bh = H * _u(rng, 0.3, 0.55)
        prof = [[br * 0.6, 0.0], [br * 0.9, bh * 0.15], [br, bh * 0.45], [br * 0.75, bh * 0.8], [br * 0.35, bh * 0.95],
                [br * 0.3, bh]]
        b.add("base", revolve(prof, res=res))
        z_stem = bh
        feats.append("a vase-shaped base")
    else:  # tripod legs, labelled base: they are what stands on the floor
        spread = _u(rng, 0.22, 0.35)
        z_stem = H * _u(rng, 0.3, 0.5)
        off = _u(rng, 0, 2 * np.pi)
        for k in range(3):
            a = off + 2 * np.pi * k / 3
            b.add("base", tube([(0, 0, z_stem + 0.02), (spread * np.cos(a), spread * np.sin(a), 0.0)],
                               [stem_r * 1.2, stem_r * 0.8], res=res))
        feats.append("a tripod base")

    # stem and shade
    if kind == "arm":
        # two arm segments and a shade that points forward and down (-Y, -Z)
        a1 = _u(rng, 0.2, 0.6)
        l1, l2 = H * _u(rng, 0.55, 0.75), H * _u(rng, 0.45, 0.7)
        j1 = np.array([0.0, 0.0, z_stem])
        j2 = j1 + l1 * np.array([0.0, np.sin(a1), np.cos(a1)])
        a2 = _u(rng, 1.3, 2.0)  # angle of the upper arm from vertical: forward and slightly down
        j3 = j2 + l2 * np.array([0.0, -np.sin(a2), np.cos(a2)])
        # keep the hanging shade clear of the table: the lamp must stand on its base
        j3[2] = max(j3[2], z_stem + 0.05 + sh + sr)
        b.add("stem", tube([j1, j2], stem_r, res=res))
        b.add("stem", tube([j2, j3], stem_r, res=res))
        b.add("stem", ball(stem_r * 1.8, j2, res=res))
        tilt = _u(rng, 0.5, 1.1)
        down = np.array([0.0, -np.sin(tilt), -np.cos(tilt)])
        # the shade's local +Z points from its opening to its top, i.e. against `down`
        origin = j3 + down * sh * 0.9
        b.add("shade", _shade(shade_kind, sr, r_top, sh, th, res=res, axis=-down, origin=origin))
        if rng.random() < 0.7:
            b.add("bulb", ball(min(sr, r_top) * 0.55, origin - down * sh * 0.4, res=res))
        feats.append("an adjustable arm")
        top_z = float(max(j2[2], j3[2]) + sr)
    else:
        arc = kind == "floor" and rng.random() < 0.3
        z_sh = H - sh
        if arc:
            reach = _u(rng, 0.3, 0.6)
            top = H + 0.1
            path = [(0, 0, z_stem - 0.005), (0, 0, top - 0.25), (0, 0, top), (0, -reach, top),
                    (0, -reach, top - 0.08)]
            b.add("stem", tube(path, stem_r, res=res, corner=0.2))
            origin = np.array([0.0, -reach, top - 0.08 - sh])
            feats.append("an arched stem")
        else:
            b.add("stem", tube([(0, 0, z_stem - 0.005), (0, 0, z_sh + sh * 0.6)], stem_r, res=res))
            origin = np.array([0.0, 0.0, z_sh])
        b.add("shade", _shade(shade_kind, sr, r_top, sh, th, res=res, axis=(0, 0, 1), origin=origin))
        if rng.random() < 0.6:
            b.add("bulb", ball(min(sr, r_top) * 0.4, origin + (0, 0, sh * 0.4), res=res))
        top_z = H
    feats.insert(0, {"drum": "a drum shade", "cone": "a conical shade", "empire": "a tapered shade",
                     "dome": "a dome shade"}[shade_kind])
    size = {"floor": "tall", "table": "small" if H < 0.45 else None, "arm": None}[kind]
    noun = {"floor": "floor lamp", "table": "table lamp", "arm": "desk lamp"}[kind]
    b.attributes.update(colour=colour_word(b, "shade"), size=size, lamp_kind=kind, shade=shade_kind,
                        base=base_kind, height_m=round(top_z, 3))
    return b.build(seed=seed, caption=caption(noun, rng, colour=colour_word(b, "shade"), size=size,
                                              features=feats))
