"""Object families: mug, bottle, airplane, car, guitar, vase.

Same conventions as ``_furniture``: design units are metres, Z up, the object
rests on z = 0 (an airplane's lowest point is its lowest point), its front faces
-Y (a car's headlights, an airplane's nose, a guitar's strings, a mug's handle
points to +X), ``res`` comes from the estimated bounding-box diagonal, and every
part is a closed primitive. Colours are drawn by ``ShapeBuilder.material``.
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
    register,
    revolve,
    rot,
    rounded_box,
    superellipse,
    transformed,
    tube,
)

def _smooth(points: Sequence[Sequence[float]], iters: int = 3) -> np.ndarray:
    """Chaikin corner cutting of an open polyline [K, C]; the end points stay fixed."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iters):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        mid = np.empty((2 * (len(p) - 1), p.shape[1]))
        mid[0::2], mid[1::2] = q, r
        p = np.concatenate([p[:1], mid[1:-1], p[-1:]])
    return p


def _hollow_profile(outer: np.ndarray, wall: float, floor: float) -> np.ndarray:
    """(r, z) profile of an open vessel: up the outside ``outer`` [K, 2], across the
    rim, down the inside (``wall`` thick) to a floor ``floor`` above the outer bottom.
    Revolved, it gives one closed solid with a cavity open at the top."""
    z0 = outer[0, 1]
    inner_z = outer[:, 1]
    keep = inner_z >= z0 + floor
    inner = np.stack([np.maximum(outer[keep, 0] - wall, wall * 0.5), inner_z[keep]], 1)[::-1]
    return np.concatenate([outer, inner, [[0.0, z0 + floor]]])


# ============================================================== mug

MUG_PARTS = ["body", "handle", "rim", "base"]


@register("mug", MUG_PARTS)
def mug(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("mug", MUG_PARTS, rng)
    shape = _pick(rng, ["straight", "tapered", "barrel", "tulip"], [0.4, 0.25, 0.2, 0.15])
    R = _u(rng, 0.035, 0.055)
    H = R * _u(rng, 1.3, 2.6)
    th = _u(rng, 0.0035, 0.007)
    k = _u(rng, 0.1, 0.3)
    res = _res(2.6 * R, 2 * R, H, frac=0.019)

    def radius(z: np.ndarray) -> np.ndarray:
        s = np.asarray(z) / H
        if shape == "straight":
            return np.full_like(s, R)
        if shape == "tapered":
            return R * (1 + k * s)
        if shape == "barrel":
            return R * (1 + 0.6 * k * np.sin(np.pi * s))
        return R * (1 + k * np.sin(np.pi * 0.85 * s) ** 2 - 0.5 * k * s)  # tulip: belly, then narrowing

    zs = np.linspace(0.0, H, 24)
    outer = np.concatenate([[[R * 0.93, 0.0]], np.stack([radius(zs[1:]), zs[1:]], 1)])
    b.add("body", revolve(_hollow_profile(outer, th, _u(rng, 0.006, 0.012)), res=res))
    # rim: a rounded lip on top of the wall
    rr = th * _u(rng, 0.55, 0.9)
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    rc = float(radius(np.array([H]))[0]) - th / 2
    b.add("rim", revolve(np.stack([rc + rr * np.cos(a), H + rr * np.sin(a)], 1), res=res, closed=True))
    feats: list[str] = []
    # optional foot
    foot = _pick(rng, ["none", "ring", "disc"], [0.55, 0.25, 0.2])
    if foot != "none":
        fh = _u(rng, 0.004, 0.009)
        if foot == "ring":
            b.add("base", revolve([[R * 0.7, -fh], [R * 0.96, -fh], [R * 0.96, 0.004], [R * 0.7, 0.004]], res=res,
                                  closed=True))
        else:
            b.add("base", revolve([[R * 1.08, -fh], [R * 1.08, 0.0], [R * 0.8, 0.004]], res=res))
            feats.append("a wide foot")
    # handle on +X: a swept tube whose ends sit inside the wall
    hs = _pick(rng, ["round", "square", "D", "ear"], [0.35, 0.25, 0.25, 0.15])
    rh = _u(rng, 0.004, 0.008)
    if hs == "ear":
        zt, zb = H * _u(rng, 0.75, 0.85), H * _u(rng, 0.45, 0.55)
        ax = _u(rng, 0.015, 0.022)
    else:
        zt, zb = H * _u(rng, 0.72, 0.86), H * _u(rng, 0.15, 0.35)
        ax = _u(rng, 0.022, 0.04)
    ax = max(ax, 3.2 * rh)
    zc, hz = (zt + zb) / 2, (zt - zb) / 2

    def wall_x(z: np.ndarray) -> np.ndarray:
        return radius(z) - th * 0.5

    if hs == "square":
        path = np.array([[0, 0, zt], [ax, 0, zt], [ax, 0, zb], [0, 0, zb]], dtype=np.float64)
        path[:, 0] += wall_x(path[:, 2])
        handle = tube(path, rh, res=res, corner=min(hz, ax) * 0.35)
    else:
        e = 2.0 if hs in ("round", "ear") else 5.0  # superellipse exponent: 'D' has a flat outer side
        t = np.linspace(np.pi / 2, -np.pi / 2, 40)
        c, s = np.cos(t), np.sin(t)
        z = zc + hz * np.sign(s) * np.abs(s) ** (2 / e)
        x = wall_x(z) + ax * np.abs(c) ** (2 / e)
        handle = tube(np.stack([x, np.zeros_like(x), z], 1), rh, res=res)
    b.add("handle", handle)
    feats.insert(0, {"round": "a round handle", "square": "a square handle", "D": "a D-shaped handle",
                     "ear": "a small ear-shaped handle"}[hs])
    if shape != "straight":
        feats.append({"tapered": "a flared body", "barrel": "a barrel-shaped body", "tulip": "a bellied body"}[shape])
    size = "tall" if H / R > 2.2 else "small" if H < 0.075 else None
    b.attributes.update(colour=colour_word(b, "body"), size=size, handle=hs, body_shape=shape, foot=foot,
                        height_m=round(H, 4))
    return b.build(seed=seed, caption=caption("mug", rng, colour=colour_word(b, "body"), size=size, features=feats))


# ============================================================== bottle

BOTTLE_PARTS = ["body", "neck", "cap", "label"]


@register("bottle", BOTTLE_PARTS)
def bottle(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("bottle", BOTTLE_PARTS, rng)
    kind = _pick(rng, ["wine", "water", "soda", "square", "jug"], [0.25, 0.25, 0.15, 0.15, 0.2])
    R = {"wine": _u(rng, 0.036, 0.045), "water": _u(rng, 0.03, 0.042), "soda": _u(rng, 0.03, 0.04),
         "square": _u(rng, 0.03, 0.05), "jug": _u(rng, 0.05, 0.08)}[kind]
    Hc = {"wine": _u(rng, 0.17, 0.21), "water": _u(rng, 0.12, 0.2), "soda": _u(rng, 0.13, 0.18),
          "square": _u(rng, 0.1, 0.18), "jug": R * _u(rng, 1.6, 2.2)}[kind]
    rn = {"wine": _u(rng, 0.012, 0.015), "water": _u(rng, 0.011, 0.014), "soda": _u(rng, 0.011, 0.013),
          "square": _u(rng, 0.01, 0.016), "jug": _u(rng, 0.014, 0.022)}[kind]
    hs = {"wine": _u(rng, 0.035, 0.07), "water": _u(rng, 0.02, 0.04), "soda": _u(rng, 0.05, 0.08),
          "square": _u(rng, 0.02, 0.04), "jug": 0.0}[kind]
    ln = {"wine": _u(rng, 0.07, 0.1), "water": _u(rng, 0.012, 0.022), "soda": _u(rng, 0.02, 0.035),
          "square": _u(rng, 0.015, 0.03), "jug": _u(rng, 0.02, 0.05)}[kind]
    zs = Hc + hs  # top of the shoulder, where the neck starts
    H = zs + ln
    res = _res(2 * R, 2 * R, H + 0.03)
    feats: list[str] = []

    # body
    zz = np.linspace(0, Hc, 40)
    if kind == "water":
        pitch = _u(rng, 0.012, 0.025)
        rz = R * (1 - 0.035 * np.clip(np.sin(2 * np.pi * zz / pitch), 0, None) ** 4 * (zz > 0.2 * Hc) * (zz < 0.9 * Hc))
    elif kind == "soda":
        rz = R * (1 - _u(rng, 0.1, 0.18) * np.exp(-(((zz / Hc) - 0.55) / 0.15) ** 2))
    else:
        rz = np.full_like(zz, R)
    if kind == "jug":
        ctrl = [[R * 0.75, 0.0], [R * 0.97, 0.12 * Hc], [R, 0.38 * Hc], [R * 0.9, 0.66 * Hc], [R * 0.55, 0.86 * Hc],
                [rn * 1.2, 0.97 * Hc], [rn, Hc]]
        outer = _smooth(ctrl, 3)
        zs, H = Hc, Hc + ln
    elif kind == "square":
        outer = None
    else:
        t = np.linspace(0, 1, 16)[1:]
        shoulder = np.stack([rn + (R - rn) * (0.5 + 0.5 * np.cos(np.pi * t)), Hc + hs * t], 1)
        outer = np.concatenate([[[R * 0.9, 0.0]], np.stack([rz[1:], zz[1:]], 1), shoulder])
    if outer is not None:
        b.add("body", revolve(outer, res=res))
        body_r = lambda z: np.interp(z, outer[:, 1], outer[:, 0])  # noqa: E731
    else:
        depth = R * _u(rng, 0.55, 1.0)
        ex = _u(rng, 4.0, 6.0)
        count = max(48, int(np.ceil(2 * np.pi * R / res)))
        loops = []
        for z, a, bb, e in [(0.0, R * 0.94, depth * 0.94, ex), (0.006, R, depth, ex), (Hc, R, depth, ex)]:
            loops.append(np.c_[superellipse(a, bb, count=count, exponent=e), np.full(count, z)])
        for t in np.linspace(0, 1, 8)[1:]:
            s = 0.5 + 0.5 * np.cos(np.pi * t)
            e = 2.0 + (ex - 2.0) * s
            loops.append(np.c_[superellipse(rn + (R - rn) * s, rn + (depth - rn) * s, count=count, exponent=e),
                               np.full(count, Hc + hs * t)])
        b.add("body", loft(loops, res=res))
        feats.append("a square body")
    # neck with a lip bead
    lip = _u(rng, 0.0015, 0.004)
    lh = min(_u(rng, 0.004, 0.008), ln * 0.5)
    b.add("neck", revolve([[rn, zs - 0.01], [rn, H - lh], [rn + lip, H - lh * 0.7], [rn + lip, H - lh * 0.15],
                           [rn + lip * 0.6, H]], res=res))
    # cap
    cap_kind = {"wine": _pick(rng, ["cork", "foil"]), "water": _pick(rng, ["screw", "sports"]), "soda": "screw",
                "square": _pick(rng, ["screw", "dome"]), "jug": _pick(rng, ["cork", "screw"])}[kind]
    rc = rn + lip + _u(rng, 0.001, 0.003)
    if cap_kind == "cork":
        up = _u(rng, 0.012, 0.025)
        b.add("cap", revolve([[rn * 0.85, H - 0.015], [rn * 0.95, H + up * 0.7], [rn * 0.9, H + up]], res=res))
    elif cap_kind == "foil":
        fl = min(_u(rng, 0.035, 0.06), ln + hs * 0.3)
        b.add("cap", revolve([[rn + 0.001, H - fl], [rc, H - lh * 0.8], [rc, H + 0.002], [rc * 0.9, H + 0.004]],
                             res=res))
    elif cap_kind == "screw":
        ch = _u(rng, 0.01, 0.02)
        b.add("cap", revolve([[rc, H - ch * 0.7], [rc, H + ch * 0.3 - 0.002], [rc - 0.002, H + ch * 0.3]], res=res))
    elif cap_kind == "sports":
        ch = _u(rng, 0.012, 0.018)
        b.add("cap", revolve([[rc, H - ch * 0.6], [rc, H + ch * 0.4], [rn * 0.6, H + ch * 0.45], [rn * 0.55, H + ch],
                              [rn * 0.4, H + ch * 1.05]], res=res))
    else:  # dome
        ch = _u(rng, 0.01, 0.018)
        a = np.linspace(0, np.pi / 2, 8)[:-1]
        b.add("cap", revolve(np.concatenate([[[rc, H - ch * 0.5]], np.stack([rc * np.cos(a), H + ch * np.sin(a)], 1)]),
                             res=res))
    feats.insert(0, {"cork": "a cork", "foil": "a foil-wrapped top", "screw": "a screw cap", "sports": "a sports cap",
                     "dome": "a domed cap"}[cap_kind])
    # label
    label = bool(rng.random() < 0.65)
    if label:
        if kind == "square":
            lh_ = Hc * _u(rng, 0.4, 0.7)
            b.add("label", rounded_box((R * 1.3, 0.004, lh_), (0, -depth - 0.0005, Hc * 0.5), res=res, radius=0.001))
        else:
            z_hi = Hc * (0.7 if kind == "jug" else 0.85)
            z0 = _u(rng, 0.12, 0.3) * Hc
            z1 = z0 + (z_hi - z0) * _u(rng, 0.5, 1.0)
            zl = np.linspace(z0, z1, 12)
            rl = body_r(zl)
            prof = np.concatenate([np.stack([rl + 0.0012, zl], 1), np.stack([rl - 0.004, zl], 1)[::-1]])
            b.add("label", revolve(prof, res=res, closed=True))
        feats.append("a label")
    noun = {"wine": "wine bottle", "water": "water bottle", "soda": "soda bottle", "square": "bottle",
            "jug": "round bottle"}[kind]
    size = "tall" if H > 0.27 else "small" if H < 0.17 else None
    b.attributes.update(colour=colour_word(b, "body"), size=size, bottle_kind=kind, cap=cap_kind, label=label,
                        height_m=round(H, 4))
    return b.build(seed=seed, caption=caption(noun, rng, colour=colour_word(b, "body"), size=size, features=feats))


# ============================================================== airplane

AIRPLANE_PARTS = ["fuselage", "wing", "tail", "engine"]


def _foil(le: np.ndarray, chord: float, thick: float, chord_dir: Sequence[float], thick_dir: Sequence[float],
          n: int = 20) -> np.ndarray:
    """A closed symmetric NACA-00xx section [2n - 2, 3], leading edge at ``le``."""
    x = (1 - np.cos(np.linspace(0, np.pi, n))) / 2
    yt = 5 * thick * (0.2969 * np.sqrt(x) - 0.1260 * x - 0.3516 * x**2 + 0.2843 * x**3 - 0.1036 * x**4)
    xs = np.concatenate([x[::-1], x[1:-1]])
    ys = np.concatenate([yt[::-1], -yt[1:-1]])
    cd, td = np.asarray(chord_dir, dtype=np.float64), np.asarray(thick_dir, dtype=np.float64)
    return np.asarray(le)[None] + chord * (xs[:, None] * cd[None] + ys[:, None] * td[None])


def _blade(center: np.ndarray, direction: np.ndarray, length: float, width: float, *, res: float):
    """A flat propeller blade in the XZ plane (broad face towards -Y), from ``center`` outwards."""
    d = direction / np.linalg.norm(direction)
    side = np.cross(np.array([0.0, 1.0, 0.0]), d)
    m = rounded_box((width, width * 0.2, length), res=res, radius=width * 0.09)
    tf = np.eye(4)
    tf[:3, :3] = np.stack([side, [0.0, 1.0, 0.0], d], 1)
    tf[:3, 3] = center + d * length / 2
    m.apply_transform(tf)
    return m


@register("airplane", AIRPLANE_PARTS)
def airplane(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("airplane", AIRPLANE_PARTS, rng)
    kind = _pick(rng, ["airliner", "bizjet", "turboprop", "light", "glider"], [0.35, 0.15, 0.15, 0.2, 0.15])
    L = 1.0
    R = {"airliner": _u(rng, 0.045, 0.065), "bizjet": _u(rng, 0.04, 0.05), "turboprop": _u(rng, 0.045, 0.055),
         "light": _u(rng, 0.045, 0.06), "glider": _u(rng, 0.028, 0.036)}[kind]
    span = {"airliner": _u(rng, 0.85, 1.1), "bizjet": _u(rng, 0.7, 0.9), "turboprop": _u(rng, 0.95, 1.15),
            "light": _u(rng, 1.1, 1.35), "glider": _u(rng, 1.6, 2.0)}[kind]
    cr = {"airliner": _u(rng, 0.15, 0.22), "bizjet": _u(rng, 0.12, 0.17), "turboprop": _u(rng, 0.09, 0.12),
          "light": _u(rng, 0.13, 0.17), "glider": _u(rng, 0.07, 0.09)}[kind]
    taper = {"airliner": _u(rng, 0.25, 0.4), "bizjet": _u(rng, 0.3, 0.45), "turboprop": _u(rng, 0.5, 0.7),
             "light": _u(rng, 0.65, 1.0), "glider": _u(rng, 0.3, 0.45)}[kind]
    sweep = {"airliner": _u(rng, 0.45, 0.6), "bizjet": _u(rng, 0.45, 0.65), "turboprop": _u(rng, 0.0, 0.08),
             "light": 0.0, "glider": _u(rng, 0.0, 0.04)}[kind]
    dihedral = _u(rng, 0.02, 0.09)
    wing_pos = {"airliner": "low", "bizjet": "low", "turboprop": "high", "light": _pick(rng, ["high", "low"]),
                "glider": _pick(rng, ["high", "mid"])}[kind]
    tail_kind = {"airliner": _pick(rng, ["conventional", "T"], [0.75, 0.25]),
                 "bizjet": _pick(rng, ["T", "conventional"], [0.7, 0.3]),
                 "turboprop": _pick(rng, ["T", "conventional", "twin"], [0.5, 0.3, 0.2]),
                 "light": _pick(rng, ["conventional", "V", "T"], [0.6, 0.25, 0.15]),
                 "glider": _pick(rng, ["T", "V", "conventional"], [0.6, 0.2, 0.2])}[kind]
    res = _res(span, L, 0.3)
    feats: list[str] = []

    # fuselage: revolved about its own axis (local z = world +Y), nose at y = -L/2
    ln = L * {"light": _u(rng, 0.05, 0.08), "glider": _u(rng, 0.1, 0.15)}.get(kind, _u(rng, 0.08, 0.14))
    st = L * _u(rng, 0.6, 0.72)
    r_end = R * _u(rng, 0.1, 0.3)
    s = np.concatenate([ln * (1 - np.cos(np.linspace(0, np.pi / 2, 16))), np.linspace(ln, st, 6)[1:],
                        np.linspace(st, L, 20)[1:]])
    r = np.where(s < ln, R * np.sqrt(np.clip(1 - (1 - s / ln) ** 2, 0, 1)), R)
    tail_t = np.clip((s - st) / (L - st), 0, 1)
    r = np.where(s > st, R - (R - r_end) * tail_t**1.4, r)
    fus = revolve(np.stack([r, s], 1), res=res, axis=(0, 1, 0), origin=(0, -L / 2, 0))
    y_t = st - L / 2
    up = R * _u(rng, 0.3, 0.8)

    def lift(y: float | np.ndarray) -> float | np.ndarray:
        """Upsweep of the fuselage axis in the tail cone."""
        return up * np.clip((np.asarray(y) - y_t) / (L / 2 - y_t), 0, None) ** 2

    v = fus.vertices.copy()
    v[:, 2] += lift(v[:, 1])
    fus = trimesh.Trimesh(v, fus.faces, process=False)
    b.add("fuselage", fus)

    def r_at(y: float) -> float:
        return float(np.interp(y + L / 2, s, r))

    # wings: one loft through the left tip, the root and the right tip
    thick = _u(rng, 0.1, 0.14)
    z_w = {"low": -0.55 * R, "mid": 0.0, "high": 0.7 * R}[wing_pos]
    y_le = _u(rng, -0.14, -0.02) if kind not in ("light", "glider") else _u(rng, -0.3, -0.2)
    ct = cr * taper
    half = span / 2

    def le_at(x: float) -> np.ndarray:
        return np.array([x, y_le + abs(x) * np.tan(sweep), z_w + abs(x) * np.tan(dihedral)])

    wing = loft([_foil(le_at(-half), ct, thick, (0, 1, 0), (0, 0, 1)),
                 _foil(le_at(0.0), cr, thick, (0, 1, 0), (0, 0, 1)),
                 _foil(le_at(half), ct, thick, (0, 1, 0), (0, 0, 1))], res=res)
    b.add("wing", wing)

    def chord_at(x: float) -> float:
        return cr + (ct - cr) * abs(x) / half

    # tail
    hs_span = span * _u(rng, 0.3, 0.4) if kind != "glider" else span * _u(rng, 0.15, 0.2)
    hc = cr * _u(rng, 0.45, 0.65) if kind != "glider" else cr * _u(rng, 0.6, 0.8)
    fc = hc * _u(rng, 1.1, 1.5)
    fh = _u(rng, 0.1, 0.16) * (1.2 if kind == "glider" else 1.0)
    f_sweep = _u(rng, 0.3, 0.7)
    y_fin = L / 2 - fc - _u(rng, 0.0, 0.02)
    z_fin = float(lift(y_fin + fc / 2)) + r_at(y_fin + fc / 2) * 0.3

    def fin(root_le: np.ndarray, height: float, lean: np.ndarray) -> trimesh.Trimesh:
        tip = root_le + height * lean + np.array([0.0, height * np.tan(f_sweep), 0.0])
        td = (lean[2], 0.0, -lean[0])  # section thickness across the surface, in the XZ plane
        return loft([_foil(root_le, fc, 0.1, (0, 1, 0), td),
                     _foil(tip, fc * 0.6, 0.1, (0, 1, 0), td)], res=res)

    def stab(le: np.ndarray, hspan: float) -> trimesh.Trimesh:
        sw = np.tan(_u(rng, 0.2, 0.5))
        tip = [np.array([sx * hspan / 2, le[1] + hspan / 2 * sw, le[2]]) for sx in (-1, 1)]
        return loft([_foil(tip[0], hc * 0.55, 0.1, (0, 1, 0), (0, 0, 1)), _foil(le, hc, 0.1, (0, 1, 0), (0, 0, 1)),
                     _foil(tip[1], hc * 0.55, 0.1, (0, 1, 0), (0, 0, 1))], res=res)

    if tail_kind in ("conventional", "T"):
        b.add("tail", fin(np.array([0.0, y_fin, z_fin]), fh, np.array([0.0, 0.0, 1.0])))
        if tail_kind == "T":
            y_h = y_fin + fh * np.tan(f_sweep) + fc * 0.4 - hc * 0.5
            b.add("tail", stab(np.array([0.0, y_h, z_fin + fh - 0.004]), hs_span))
            feats.append("a T-tail")
        else:
            y_h = L / 2 - hc - _u(rng, 0.0, 0.03)
            b.add("tail", stab(np.array([0.0, y_h, float(lift(y_h + hc / 2))]), hs_span))
    elif tail_kind == "twin":
        y_h = L / 2 - hc - 0.01
        z_h = float(lift(y_h + hc / 2))
        b.add("tail", stab(np.array([0.0, y_h, z_h]), hs_span))
        for sx in (-1, 1):
            b.add("tail", fin(np.array([sx * hs_span * 0.45, y_h - 0.01, z_h - fh * 0.3]), fh * 0.9,
                              np.array([0.0, 0.0, 1.0])))
        feats.append("twin tail fins")
    else:  # V-tail: two slanted surfaces
        a = _u(rng, 0.5, 0.8)
        for sx in (-1, 1):
            b.add("tail", fin(np.array([0.0, y_fin, z_fin - r_at(y_fin) * 0.3]), fh * 1.2,
                              np.array([sx * np.cos(a), 0.0, np.sin(a)])))
        feats.append("a V-tail")

    # engines
    n_eng = 0
    if kind in ("airliner", "turboprop"):
        n_eng = 4 if kind == "airliner" and rng.random() < 0.3 else 2
        le_n = _u(rng, 0.13, 0.2) if kind == "airliner" else _u(rng, 0.12, 0.16)
        re = _u(rng, 0.024, 0.04) if kind == "airliner" else _u(rng, 0.018, 0.025)
        xs = [half * _u(rng, 0.28, 0.38)] if n_eng == 2 else [half * 0.3, half * 0.58]
        for x0 in xs:
            for sx in (-1, 1):
                x = sx * x0
                le = le_at(x)
                if kind == "airliner":
                    y0, z0 = le[1] - 0.45 * le_n, le[2] - re * 1.5
                    prof = [[re * 0.85, 0.0], [re, 0.12 * le_n], [re, 0.6 * le_n], [re * 0.55, le_n]]
                    b.add("engine", revolve(prof, res=res, axis=(0, 1, 0), origin=(x, y0, z0)))
                    b.add("engine", beam((x, le[1] - 0.01, z0 + re * 0.7), (x, le[1] + 0.03, le[2]), 0.008,
                                         le_n * 0.45, res=res))
                else:
                    y0, z0 = le[1] - 0.35 * le_n, le[2] + (0.0 if wing_pos == "high" else 0.01)
                    prof = [[re * 0.6, 0.0], [re, 0.2 * le_n], [re, 0.7 * le_n], [re * 0.3, le_n]]
                    b.add("engine", revolve(prof, res=res, axis=(0, 1, 0), origin=(x, y0, z0)))
                    _propeller(b, rng, np.array([x, y0, z0]), re, res=res)
        feats.append(f"{NUMBER_WORDS[n_eng]} engines")
    elif kind == "bizjet":
        n_eng = 2
        le_n, re = _u(rng, 0.1, 0.14), _u(rng, 0.022, 0.03)
        y0 = y_t + _u(rng, -0.04, 0.02)
        for sx in (-1, 1):
            z0 = float(lift(y0 + le_n / 2)) + R * 0.35
            x = sx * (r_at(y0 + le_n / 2) + re * 1.5)
            prof = [[re * 0.85, 0.0], [re, 0.12 * le_n], [re, 0.6 * le_n], [re * 0.55, le_n]]
            b.add("engine", revolve(prof, res=res, axis=(0, 1, 0), origin=(x, y0, z0)))
            b.add("engine", beam((0.0, y0 + le_n * 0.5, z0), (x, y0 + le_n * 0.5, z0), le_n * 0.4, 0.008, res=res))
        feats.append("two rear-mounted engines")
    elif kind == "light":
        n_eng = 1
        _propeller(b, rng, np.array([0.0, -L / 2 + ln * 0.5, 0.0]), R * 0.45, res=res)
        feats.append("a nose propeller")
    if kind == "turboprop":
        feats[-1] = f"{NUMBER_WORDS[n_eng]} propeller engines"
    if kind in ("airliner", "bizjet"):
        feats.insert(0, "swept wings")
    if kind == "glider":
        feats.insert(0, "long slender wings")
    if wing_pos == "high":
        feats.append("high-mounted wings")
    size = "large" if kind == "airliner" and n_eng == 4 else "small" if kind == "light" else None
    b.attributes.update(colour=colour_word(b, "fuselage"), size=size, plane_kind=kind, n_engines=n_eng,
                        tail=tail_kind, wing_position=wing_pos)
    cap = caption("airplane", rng, colour=colour_word(b, "fuselage"), size=size, features=feats)
    return b.build(seed=seed, caption=cap)


def _propeller(b: ShapeBuilder, rng: np.random.Generator, center: np.ndarray, r_hub: float, *, res: float) -> None:
    """Spinner plus 2-5 blades in the XZ plane, facing -Y; labelled 'engine'."""
    sl = r_hub * 2.2
    # local +Z of the spinner points forward (-Y)
    b.add("engine", revolve(_smooth([[r_hub, 0.0], [r_hub * 0.9, sl * 0.5], [0.0, sl]], 2), res=res,
                            axis=(0, -1, 0), origin=center + (0, 0.002, 0)))
    n = int(rng.integers(2, 6))
    length = r_hub * _u(rng, 3.0, 4.5)
    off = _u(rng, 0, np.pi)
    for k in range(n):
        a = off + 2 * np.pi * k / n
        d = np.array([np.cos(a), 0.0, np.sin(a)])
        b.add("engine", _blade(center + np.array([0.0, -sl * 0.35, 0.0]), d, length, r_hub * 0.7, res=res))


# ============================================================== car

CAR_PARTS = ["body", "cabin", "wheel", "light", "spoiler"]


def _wheel(center: Sequence[float], R: float, width: float, *, res: float, outward: float) -> trimesh.Trimesh:
    """A solid tyre-and-rim wheel revolved about X; ``outward`` (+1/-1) is the side its hub faces."""
    w = width / 2
    e = min(0.25 * R, 0.4 * w)
    prof = [[0.0, -w + 0.2 * e], [R * 0.62, -w + 0.2 * e], [R * 0.7, -w], [R - e, -w], [R, -w + e], [R, w - e],
            [R - e, w], [R * 0.7, w], [R * 0.62, w - 0.35 * e], [R * 0.25, w - 0.35 * e], [R * 0.2, w - 0.1 * e],
            [0.0, w - 0.1 * e]]
    return revolve(prof, res=res, axis=(outward, 0, 0), origin=center)


@register("car", CAR_PARTS)
def car(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("car", CAR_PARTS, rng)
    kind = _pick(rng, ["sedan", "hatchback", "suv", "pickup", "van", "sports", "truck"],
                 [0.22, 0.18, 0.15, 0.12, 0.1, 0.12, 0.11])
    spec = {
        # length, width, wheel radius, clearance, belt height, roof height,
        # cabin front/rear, roof front/rear (fractions of the length from the front), trunk drop
        "sedan": ((4.4, 4.9), (1.75, 1.9), (0.31, 0.34), (0.15, 0.18), (0.78, 0.88), (1.38, 1.5),
                  (0.32, 0.8), (0.45, 0.7), (0.08, 0.14)),
        "hatchback": ((3.7, 4.3), (1.65, 1.8), (0.29, 0.32), (0.14, 0.17), (0.78, 0.88), (1.42, 1.55),
                      (0.3, 0.96), (0.43, 0.9), (0.0, 0.0)),
        "suv": ((4.4, 4.9), (1.8, 2.0), (0.36, 0.41), (0.2, 0.26), (0.98, 1.08), (1.68, 1.85),
                (0.28, 0.96), (0.4, 0.93), (0.0, 0.0)),
        "pickup": ((5.2, 5.8), (1.9, 2.05), (0.37, 0.41), (0.22, 0.27), (1.0, 1.1), (1.78, 1.92),
                   (0.27, 0.56), (0.35, 0.54), (0.0, 0.0)),
        "van": ((4.8, 5.3), (1.9, 2.05), (0.33, 0.37), (0.16, 0.2), (0.95, 1.05), (1.95, 2.15),
                (0.17, 0.97), (0.28, 0.95), (0.0, 0.0)),
        "sports": ((4.1, 4.6), (1.85, 1.98), (0.32, 0.35), (0.1, 0.13), (0.62, 0.72), (1.1, 1.25),
                   (0.36, 0.8), (0.5, 0.7), (0.03, 0.07)),
        "truck": ((6.5, 8.0), (2.3, 2.5), (0.45, 0.5), (0.28, 0.33), (1.05, 1.15), (2.6, 2.95),
                  (0.01, 0.23), (0.03, 0.21), (0.0, 0.0)),
    }[kind]
    Lc, W, Rw, clr, belt, roof = (_u(rng, *spec[i]) for i in range(6))
    cf, cb = spec[6]
    rf, rb = spec[7]
    jitter = lambda: _u(rng, -0.02, 0.02)  # noqa: E731
    cf, cb, rf, rb = cf + jitter(), min(cb + jitter(), 0.99), rf + jitter(), min(rb + jitter(), 0.97)
    # the cabin stays behind the nose, so the headlights lead at -Y
    cf, rf = max(cf, 0.02), max(rf, 0.03)
    trunk = _u(rng, *spec[8])
    hood = _u(rng, 0.05, 0.15) if kind not in ("van", "truck") else 0.0
    box_top = _u(rng, 3.1, 3.6) if kind == "truck" else 0.0
    res = _res(Lc, W, max(roof, box_top))
    feats: list[str] = []
    hw = W / 2
    ex = _u(rng, 3.0, 5.0)
    count = max(48, int(np.ceil(2 * (W + belt) / res)))

    def y_of(f: float) -> float:
        return -Lc / 2 + f * Lc

    # body: a loft of rounded cross-sections from the nose (-Y) to the tail (+Y)
    body_top = belt
    stations = [  # (y, bottom, top, half width)
        (y_of(0.0), clr + 0.12, body_top - hood - 0.12, hw * 0.9),
        (y_of(0.05), clr + 0.02, body_top - hood - 0.02, hw * 0.98),
        (y_of(0.12), clr, body_top - hood, hw),
        (y_of(max(cf + 0.02, 0.2)), clr, body_top - hood * 0.2, hw),
        (y_of(0.9), clr, body_top - trunk, hw),
        (y_of(0.97), clr + 0.03, body_top - trunk - 0.03, hw * 0.98),
        (y_of(1.0), clr + 0.1, body_top - trunk - 0.1, hw * 0.92),
    ]
    loops = []
    for y, lo, hi, h in stations:
        xz = superellipse(h, (hi - lo) / 2, count=count, exponent=ex)
        loops.append(np.stack([xz[:, 0], np.full(count, y), xz[:, 1] + (hi + lo) / 2], 1))
    b.add("body", loft(loops, res=res))

    # cabin: a loft from the belt line up to the roof, narrowing and shortening
    cx = _u(rng, 4.0, 7.0)
    bot_len, top_len = (cb - cf) * Lc / 2, (rb - rf) * Lc / 2
    c_bot, c_top = y_of((cf + cb) / 2), y_of((rf + rb) / 2)
    loops = []
    for z, cy, hl, w in [(belt - 0.06, c_bot, bot_len, hw * 0.96), (belt + 0.02, c_bot, bot_len * 0.995, hw * 0.96),
                         (roof - 0.04, c_top, top_len, hw * _u(rng, 0.78, 0.86)),
                         (roof, c_top, top_len * 0.96, hw * 0.76)]:
        xy = superellipse(w, hl, count=count, exponent=cx)
        loops.append(np.stack([xy[:, 0], xy[:, 1] + cy, np.full(count, z)], 1))
    b.add("cabin", loft(loops, res=res))

    # truck cargo box / pickup bed walls (body)
    if kind == "truck":
        y0 = y_of(cb + 0.02)
        b.add("body", rounded_box((W * 1.02, Lc / 2 - y0, box_top - belt + 0.05), (0, (y0 + Lc / 2) / 2,
                                  (box_top + belt - 0.05) / 2), res=res, radius=0.05))
        feats.append("a cargo box")
    elif kind == "pickup":
        y0 = y_of(cb + 0.02)
        wall = _u(rng, 0.3, 0.45)
        for sx in (-1, 1):
            b.add("body", rounded_box((0.08, Lc / 2 - y0, wall), (sx * (hw - 0.04), (y0 + Lc / 2) / 2,
                                      belt + wall / 2 - 0.02), res=res, radius=0.02))
        b.add("body", rounded_box((W - 0.04, 0.08, wall), (0, Lc / 2 - 0.1, belt + wall / 2 - 0.02), res=res,
                                  radius=0.02))
        feats.append("an open cargo bed")

    # wheels
    tw = _u(rng, 0.2, 0.3) * (1.2 if kind == "truck" else 1.0)
    if kind == "truck":
        axles = [y_of(0.12), y_of(_u(rng, 0.66, 0.7)), y_of(_u(rng, 0.8, 0.84))]
    else:
        axles = [y_of(_u(rng, 0.15, 0.19)), y_of(_u(rng, 0.78, 0.84))]
    for y in axles:
        for sx in (-1, 1):
            b.add("wheel", _wheel((sx * (hw - tw * 0.3), y, Rw), Rw, tw, res=res, outward=sx))
    n_wheels = 2 * len(axles)
    feats.append(f"{NUMBER_WORDS[n_wheels]} wheels")

    # lights: headlights on the nose, tail lights on the back
    zf = (stations[1][1] + stations[1][2]) / 2 + 0.25 * (stations[1][2] - stations[1][1])
    zr = (stations[-2][1] + stations[-2][2]) / 2 + 0.25 * (stations[-2][2] - stations[-2][1])
    lw = _u(rng, 0.2, 0.35)
    round_lights = rng.random() < 0.35
    for sx in (-1, 1):
        x = sx * (hw * 0.9 - lw / 2 - 0.05)
        if round_lights:
            b.add("light", ball(0.09, (x, -Lc / 2 + 0.05, zf), res=res))
        else:
            b.add("light", rounded_box((lw, 0.2, 0.12), (x, -Lc / 2 + 0.08, zf), res=res, radius=0.03))
        b.add("light", rounded_box((lw * 0.8, 0.14, 0.08), (x, Lc / 2 - 0.05, zr), res=res, radius=0.02))
    if round_lights:
        feats.append("round headlights")

    # spoiler
    p_sp = {"sports": 0.7, "sedan": 0.15, "hatchback": 0.25}.get(kind, 0.0)
    spoiler = bool(rng.random() < p_sp)
    if spoiler:
        if kind == "hatchback":
            y = y_of(rb) + 0.05
            b.add("spoiler", rounded_box((W * 0.72, 0.3, 0.04), (0, y, roof - 0.03), res=res, radius=0.015))
        else:
            y = Lc / 2 - _u(rng, 0.12, 0.2)
            z_top = belt - trunk + _u(rng, 0.12, 0.22)
            b.add("spoiler", rounded_box((W * 0.9, 0.22, 0.035), (0, y, z_top), res=res, radius=0.012))
            for sx in (-1, 1):
                b.add("spoiler", beam((sx * W * 0.3, y, belt - trunk - 0.05), (sx * W * 0.3, y, z_top), 0.03, 0.12,
                                      res=res))
        feats.append("a rear spoiler")
    # the body style is a feature so that every caption still says "car"
    feats.insert(0, {"sedan": "a sedan body", "hatchback": "a hatchback body", "suv": "a tall SUV body",
                     "pickup": "a pickup cab", "van": "a van body", "sports": "a sporty body",
                     "truck": "a truck cab"}[kind])
    size = "large" if kind == "truck" else "low" if kind == "sports" else "compact" if Lc < 4.0 else None
    b.attributes.update(colour=colour_word(b, "body"), size=size, car_kind=kind, n_wheels=n_wheels, spoiler=spoiler)
    cap = caption("car", rng, colour=colour_word(b, "body"), size=size, features=feats)
    return b.build(seed=seed, caption=cap)


# ============================================================== guitar

GUITAR_PARTS = ["body", "neck", "headstock", "bridge", "string"]


@register("guitar", GUITAR_PARTS)
def guitar(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("guitar", GUITAR_PARTS, rng)
    kind = _pick(rng, ["acoustic", "electric", "bass", "ukulele"], [0.4, 0.3, 0.15, 0.15])
    scale = {"acoustic": 1.0, "electric": 0.9, "bass": 1.0, "ukulele": 0.48}[kind] * _u(rng, 0.95, 1.05)
    Lb = 0.5 * scale
    lower = {"acoustic": 0.4, "electric": 0.33, "bass": 0.35, "ukulele": 0.4}[kind] * scale * _u(rng, 0.93, 1.05)
    upper = lower * _u(rng, 0.7, 0.82)
    waist = min(lower, upper) * _u(rng, 0.72, 0.85)
    depth = {"acoustic": _u(rng, 0.09, 0.12), "electric": _u(rng, 0.04, 0.05), "bass": _u(rng, 0.04, 0.05),
             "ukulele": _u(rng, 0.055, 0.07)}[kind]
    Ln = {"acoustic": 0.45, "electric": 0.45, "bass": 0.68, "ukulele": 0.2}[kind] * _u(rng, 0.95, 1.05)
    n_str = 6 if kind in ("acoustic", "electric") else 4
    if kind == "acoustic" and rng.random() < 0.15:
        n_str = 12
    nw = (0.045 if n_str < 12 else 0.05) * (0.8 if kind == "ukulele" else 1.0)
    nd = 0.022
    head_l = _u(rng, 0.15, 0.2) * (0.6 if kind == "ukulele" else 1.0)
    H = Lb + Ln + head_l
    res = _res(lower, depth, H)
    feats: list[str] = []

    # body: stacked cross-sections along z, half-width from a smooth union of two bouts
    t = (1 - np.cos(np.linspace(0.02, np.pi - 0.02, 48))) / 2
    e1 = (lower / 2) * np.sqrt(np.clip(1 - ((t - 0.3) / 0.3) ** 2, 0, None))
    e2 = (upper / 2) * np.sqrt(np.clip(1 - ((t - 0.76) / 0.24) ** 2, 0, None))
    k = 6.0
    half = (e1**k + e2**k) ** (1 / k)
    # pinch the waist towards `waist`
    pinch = np.exp(-(((t - 0.58) / 0.09) ** 2))
    half = half * (1 - pinch) + np.minimum(half, waist / 2) * pinch
    half = np.maximum(half, 0.004)
    count = max(48, int(np.ceil(np.pi * lower / res)))
    ex = 4.0 if kind != "electric" else 3.0
    loops = [np.c_[superellipse(h, depth / 2, count=count, exponent=ex), np.full(count, z)]
             for h, z in zip(half, t * Lb)]
    b.add("body", loft(loops, res=res))
    y_front = -depth / 2

    # neck (with fretboard) from inside the body to the headstock
    y_neck = y_front + nd / 2 + (0.004 if kind != "acoustic" else -0.002)
    z_neck0 = Lb * 0.78
    z_nut = Lb + Ln
    b.add("neck", beam((0, y_neck, z_neck0), (0, y_neck, z_nut), nw, nd, res=res, radius=0.006))
    # headstock tilted back (+Y) above the nut, with tuning pegs
    tilt = _u(rng, 0.1, 0.25) if kind in ("acoustic", "ukulele") else _u(rng, 0.0, 0.08)
    inline = kind in ("electric", "bass") and rng.random() < 0.5
    hw_ = nw * (1.0 if inline else 1.6) + 0.01
    head = rounded_box((hw_, 0.016, head_l), (0, 0, head_l / 2), res=res, radius=0.006)
    R_h = rot("x", -tilt)
    b.add("headstock", transformed(head, rotate=R_h, translate=(0, y_neck, z_nut - 0.005)))
    n_pegs = n_str if n_str < 12 else 12
    for i in range(n_pegs):
        if inline:
            side, slot = 1, i
            per_side = n_pegs
        else:
            side, slot = (-1 if i % 2 == 0 else 1), i // 2
            per_side = (n_pegs + 1) // 2
        z_loc = head_l * (0.2 + 0.7 * (slot + 0.5) / per_side)
        x_in, x_out = side * hw_ * 0.3, side * (hw_ / 2 + 0.02)
        peg = tube([(x_in, 0.0, z_loc), (x_out, 0.0, z_loc)], 0.0035, res=res)
        b.add("headstock", transformed(peg, rotate=R_h, translate=(0, y_neck, z_nut - 0.005)))
    if inline:
        feats.append("all tuning pegs on one side")
    # bridge on the soundboard
    z_br = Lb * _u(rng, 0.2, 0.26)
    bh = 0.008 if kind != "electric" else 0.012
    b.add("bridge", rounded_box((min(0.16, lower * 0.4), bh * 2, 0.02), (0, y_front - bh * 0.5, z_br), res=res,
                                radius=0.004))
    # strings from the bridge to the nut, just above the fretboard
    spread_b, spread_n = nw * 1.1, nw * 0.8
    y_top = y_neck - nd / 2 - 0.003
    for i in range(n_str):
        f = (i + 0.5) / n_str - 0.5
        p0 = (f * spread_b, y_front - bh * 1.4, z_br)
        p1 = (f * spread_n, y_top, z_nut)
        b.add("string", tube([p0, p1], 0.0009 if kind != "bass" else 0.0014, res=res, sections=8))
    feats.insert(0, f"{NUMBER_WORDS.get(n_str, 'twelve')} strings")
    noun = {"acoustic": "acoustic guitar", "electric": "electric guitar", "bass": "bass guitar",
            "ukulele": "guitar"}[kind]
    size = "small" if kind == "ukulele" else None
    b.attributes.update(colour=colour_word(b, "body"), size=size, guitar_kind=kind, n_strings=n_str,
                        inline_pegs=inline)
    cap = caption(noun, rng, colour=colour_word(b, "body"), size=size, features=feats)
    return b.build(seed=seed, caption=cap)


# ============================================================== vase

VASE_PARTS = ["body", "neck", "base", "handle"]


@register("vase", VASE_PARTS)
def vase(rng: np.random.Generator, seed: int):
    b = ShapeBuilder("vase", VASE_PARTS, rng)
    style = _pick(rng, ["amphora", "bulb", "cylinder", "trumpet", "urn"])
    R = _u(rng, 0.06, 0.12)
    H = R * {"amphora": _u(rng, 3.0, 4.0), "bulb": _u(rng, 2.0, 3.0), "cylinder": _u(rng, 2.5, 4.5),
             "trumpet": _u(rng, 2.5, 4.0), "urn": _u(rng, 1.6, 2.4)}[style]
    fh = _u(rng, 0.01, 0.03)
    th = _u(rng, 0.004, 0.008)
    res = _res(2.4 * R, 2.4 * R, H, frac=0.017)
    feats: list[str] = []
    # body outer profile up to the shoulder (z_s, r_n), then a neck to the lip at H
    if style == "amphora":
        rn = R * _u(rng, 0.3, 0.4)
        z_s = H * 0.72
        ctrl = [[R * 0.3, fh], [R * 0.75, fh + 0.15 * H], [R, 0.45 * H], [R * 0.8, 0.62 * H], [rn, z_s]]
        neck = [[rn, z_s - 0.01], [rn * 0.95, 0.85 * H], [rn * 1.3, H]]
    elif style == "bulb":
        rn = R * _u(rng, 0.18, 0.3)
        z_s = H * _u(rng, 0.55, 0.7)
        ctrl = [[R * 0.5, fh], [R * 0.95, fh + 0.15 * z_s], [R, 0.45 * z_s], [R * 0.7, 0.85 * z_s], [rn, z_s]]
        neck = [[rn, z_s - 0.01], [rn, 0.9 * H], [rn * 1.4, H]]
    elif style == "cylinder":
        rn = R * _u(rng, 0.9, 1.0)
        z_s = H * 0.94
        ctrl = [[R * 0.96, fh], [R, fh + 0.02], [R, 0.6 * H], [rn, z_s]]
        neck = [[rn, z_s - 0.01], [rn * 1.02, H * 0.97], [rn * 1.06, H]]
    elif style == "trumpet":
        rn = R * _u(rng, 0.4, 0.55)
        z_s = H * _u(rng, 0.35, 0.5)
        ctrl = [[R * 0.7, fh], [R * 0.9, fh + 0.2 * z_s], [R * 0.8, 0.7 * z_s], [rn, z_s]]
        neck = [[rn, z_s - 0.01], [rn * 0.85, 0.6 * H], [R * 0.9, 0.9 * H], [R * _u(rng, 1.1, 1.4), H]]
    else:  # urn
        rn = R * _u(rng, 0.6, 0.75)
        z_s = H * 0.8
        ctrl = [[R * 0.45, fh], [R * 0.8, fh + 0.12 * H], [R, 0.45 * H], [R * 0.85, 0.7 * H], [rn, z_s]]
        neck = [[rn, z_s - 0.01], [rn * 0.95, 0.9 * H], [rn * 1.2, H]]
    outer = _smooth(ctrl, 3)
    b.add("body", revolve(_hollow_profile(outer, th, th * 1.5), res=res))
    # neck: a hollow ring wall (closed profile) from the shoulder up to a flared lip
    n_out = _smooth(neck, 3)
    n_in = np.stack([np.maximum(n_out[:, 0] - th, th * 0.5), n_out[:, 1]], 1)[::-1]
    b.add("neck", revolve(np.concatenate([n_out, n_in]), res=res, closed=True))
    # base: a foot ring or a plinth under the body
    foot = _pick(rng, ["foot", "plinth"])
    r_b = outer[0, 0]
    if foot == "foot":
        b.add("base", revolve([[r_b * 1.15, 0.0], [r_b * 1.1, fh * 0.6], [r_b * 0.9, fh + 0.004]], res=res))
    else:
        e = min(0.3 * fh, 0.004)
        b.add("base", revolve([[r_b * 1.3, 0.0], [r_b * 1.3, fh - e], [r_b * 1.3 - e, fh], [r_b * 0.9, fh + 0.004]],
                              res=res))
    # optional pair of handles from the neck to the shoulder, on the +-X sides
    handles = bool(style in ("amphora", "urn") and rng.random() < 0.7) or bool(rng.random() < 0.1)
    if handles:
        rh = max(0.004, R * 0.06)
        z0 = min(z_s + (H - z_s) * 0.6, H - 2 * rh)
        z1 = z_s - (H - z_s) * 0.4 if style != "trumpet" else z_s * 0.7
        r0 = float(np.interp(z0, n_out[:, 1], n_out[:, 0])) - th / 2
        r1 = float(np.interp(z1, outer[:, 1], outer[:, 0])) - th / 2
        out = max(r0, r1) + R * _u(rng, 0.25, 0.45)
        for sx in (-1, 1):
            path = [(sx * r0, 0, z0), (sx * out, 0, z0 + 0.01), (sx * out, 0, (z0 + z1) / 2), (sx * r1, 0, z1)]
            b.add("handle", tube(path, rh, res=res, corner=(z0 - z1) * 0.25))
        feats.append("two handles")
    feats.insert(0, {"amphora": "a slender neck", "bulb": "a round body and a narrow neck",
                     "cylinder": "straight sides", "trumpet": "a flared top", "urn": "a wide mouth"}[style])
    if foot == "plinth":
        feats.append("a flat base")
    size = "tall" if H > 0.35 else "small" if H < 0.18 else None
    b.attributes.update(colour=colour_word(b, "body"), size=size, vase_style=style, handles=handles, base=foot,
                        height_m=round(H, 4))
    return b.build(seed=seed, caption=caption("vase", rng, colour=colour_word(b, "body"), size=size, features=feats))
