"""The library's optimizers written out again from their papers' equations, in numpy float64.

Each reference runs the whole problem: `theta` (name -> array), `decayed` (names with weight
decay), `grad_fn(step, name, theta_name)` (the gradient at a point), `lrs` (one per step) and the
hyperparameters, and returns the final parameters. Nothing here imports the submissions.
"""

from __future__ import annotations

import math

import numpy as np


def _loop(theta, lrs, grad_fn, update):
    """Run `update(t, lr, name, theta_name, grad, state) -> theta_name` for every step and tensor."""
    theta = {k: v.copy() for k, v in theta.items()}
    state = {k: {} for k in theta}
    for t, lr in enumerate(lrs, start=1):
        for name in theta:
            g = grad_fn(t - 1, name, theta[name])
            theta[name] = update(t, lr, name, theta[name], g, state[name])
    return theta


def sgd_momentum(theta, decayed, grad_fn, lrs, *, mu, wd, nesterov):
    """Sutskever et al. / Polyak in the torch form: b_1 = g_1, b = mu b + g, L2 decay in g."""
    def update(t, lr, name, th, g, s):
        if name in decayed:
            g = g + wd * th
        s["b"] = g if t == 1 else mu * s["b"] + g
        return th - lr * (g + mu * s["b"] if nesterov else s["b"])
    return _loop(theta, lrs, grad_fn, update)


def adabelief(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd, rectify):
    """Zhuang et al. 2020, Algorithm 2 with s_t = ... + eps, decoupled decay; `rectify` as the
    authors' adabelief-pytorch 0.2.1: RAdam's step when N_t >= 5 (eps outside the un-corrected
    sqrt), else the SGD step on the bias-corrected momentum."""
    def update(t, lr, name, th, g, s):
        if name in decayed:
            th = th * (1 - lr * wd)
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["s"] = b2 * s.get("s", 0) + (1 - b2) * (g - s["m"]) ** 2 + eps
        if not rectify:
            return th - lr / (1 - b1**t) * s["m"] / (np.sqrt(s["s"] / (1 - b2**t)) + eps)
        n_inf = 2 / (1 - b2) - 1
        n_t = n_inf - 2 * t * b2**t / (1 - b2**t)
        if n_t < 5:
            return th - lr / (1 - b1**t) * s["m"]
        r = math.sqrt((1 - b2**t) * (n_t - 4) * (n_t - 2) * n_inf / ((n_inf - 4) * (n_inf - 2) * n_t))
        return th - lr * r / (1 - b1**t) * s["m"] / (np.sqrt(s["s"]) + eps)
    return _loop(theta, lrs, grad_fn, update)


def _project(th, g, u, *, delta, wd_ratio, eps):
    """AdamP's Algorithm 2, row by row: channel view, then layer view; (u, wd multiplier)."""
    if th.ndim < 2:
        return u, 1.0
    for rows in (th.shape[0], 1):
        P, G, U = th.reshape(rows, -1), g.reshape(rows, -1), u.reshape(rows, -1)
        cos = [abs(G[i] @ P[i]) / (max(np.linalg.norm(G[i]), eps) * max(np.linalg.norm(P[i]), eps))
               for i in range(rows)]
        if max(cos) < delta / math.sqrt(P.shape[1]):
            out = U.copy()
            for i in range(rows):
                unit = P[i] / (np.linalg.norm(P[i]) + eps)
                out[i] = U[i] - unit * (unit @ U[i])
            return out.reshape(th.shape), wd_ratio
    return u, 1.0


def adamp(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd, delta, wd_ratio, nesterov):
    def update(t, lr, name, th, g, s):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        numer = b1 * s["m"] + (1 - b1) * g if nesterov else s["m"]
        u = numer / (np.sqrt(s["v"]) / math.sqrt(1 - b2**t) + eps)
        u, ratio = _project(th, g, u, delta=delta, wd_ratio=wd_ratio, eps=eps)
        if name in decayed:
            th = th * (1 - lr * wd * ratio)
        return th - lr / (1 - b1**t) * u
    return _loop(theta, lrs, grad_fn, update)


def sgdp(theta, decayed, grad_fn, lrs, *, mu, wd, nesterov, eps, delta, wd_ratio):
    def update(t, lr, name, th, g, s):
        s["b"] = mu * s.get("b", 0) + g
        d = g + mu * s["b"] if nesterov else s["b"]
        d, ratio = _project(th, g, d, delta=delta, wd_ratio=wd_ratio, eps=eps)
        if not nesterov:  # the official code projects the buffer in place: d is b
            s["b"] = d
        if name in decayed:
            th = th * (1 - lr * wd * ratio / (1 - mu))
        return th - lr * d
    return _loop(theta, lrs, grad_fn, update)


def diffgrad(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd):
    """Dubey et al. 2019: friction xi = sigmoid(|g_{t-1} - g_t|), g_0 = 0; L2 decay in g."""
    def update(t, lr, name, th, g, s):
        if name in decayed:
            g = g + wd * th
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        xi = 1 / (1 + np.exp(-np.abs(s.get("prev", np.zeros_like(g)) - g)))
        s["prev"] = g
        return th - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * xi * s["m"] / (np.sqrt(s["v"]) + eps)
    return _loop(theta, lrs, grad_fn, update)


def lamb(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd):
    """You et al. 2020, Algorithm 2, phi(z) = z; tensors without decay take the plain Adam step."""
    def update(t, lr, name, th, g, s):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        r = (s["m"] / (1 - b1**t)) / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        if name not in decayed:
            return th - lr * r
        u = r + wd * th
        w_norm, u_norm = np.linalg.norm(th), np.linalg.norm(u)
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        return th - lr * ratio * u
    return _loop(theta, lrs, grad_fn, update)


def lion(theta, decayed, grad_fn, lrs, *, b1, b2, wd):
    def update(t, lr, name, th, g, s):
        m = s.get("m", np.zeros_like(g))
        if name in decayed:
            th = th * (1 - lr * wd)
        th = th - lr * np.sign(b1 * m + (1 - b1) * g)
        s["m"] = b2 * m + (1 - b2) * g
        return th
    return _loop(theta, lrs, grad_fn, update)


def sgd_sai(theta, decayed, grad_fn, lrs, *, mu, eps, wd):
    """Xu et al. 2024: gsnr = ||g_1|| / (std(g_1) + eps) fixed at step 1; b_1 = g_1."""
    def update(t, lr, name, th, g, s):
        if t == 1:
            s["gsnr"] = np.linalg.norm(g) / (np.std(g, ddof=1) + eps)
            s["b"] = g
        else:
            s["b"] = mu * s["b"] + (1 - mu) * g
        decay = lr * wd if name in decayed else 0.0
        return th * (1 - decay) - lr * s["gsnr"] * s["b"]
    return _loop(theta, lrs, grad_fn, update)


def schedule_free_adamw(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd, warmup_steps, r, weight_lr_power):
    """Defazio et al. 2024, Algorithm 1 with x, y and z kept explicitly; returns (y, x)."""
    x = {k: v.copy() for k, v in theta.items()}
    z = {k: v.copy() for k, v in theta.items()}
    y = {k: v.copy() for k, v in theta.items()}
    v = {k: np.zeros_like(a) for k, a in theta.items()}
    lr_max, weight_sum = -1.0, 0.0
    for t, lr in enumerate(lrs, start=1):
        gamma = lr * min(1.0, t / warmup_steps)  # schedulefree 1.4.1: no sqrt(1 - beta2^t) here
        lr_max = max(lr_max, gamma)
        weight = t**r * lr_max**weight_lr_power
        weight_sum += weight
        c = weight / weight_sum
        for name in theta:
            g = grad_fn(t - 1, name, y[name])
            v[name] = b2 * v[name] + (1 - b2) * g * g
            decay = wd * y[name] if name in decayed else 0.0
            z[name] = z[name] - gamma * (g / (np.sqrt(v[name] / (1 - b2**t)) + eps) + decay)
            x[name] = (1 - c) * x[name] + c * z[name]
            y[name] = (1 - b1) * z[name] + b1 * x[name]
    return y, x


def dynamic_map(signed: bool) -> np.ndarray:
    """Dettmers et al.'s dynamic type: for each of the 7 exponents e (values 10^(e-6)), the
    midpoints of an even split of [0.1, 1] into 2^e (signed, both signs) or 2^(e+1) pieces."""
    values = [0.0, 1.0]
    for e in range(7):
        pieces = 2**e if signed else 2 ** (e + 1)
        edges = np.linspace(0.1, 1.0, pieces + 1)
        mids = 10.0 ** (e - 6) * (edges[:-1] + edges[1:]) / 2
        values += list(mids) + (list(-mids) if signed else [])
    return np.array(sorted(values))


def _quantize(x, code, block, keep_sign):
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, len(flat), block):
        part = flat[start:start + block]
        absmax = np.abs(part).max()
        scaled = part / absmax if absmax > 0 else part
        idx = np.array([int(np.argmin(np.abs(code - s))) for s in scaled])
        if keep_sign:
            for i, s in enumerate(scaled):
                if np.signbit(code[idx[i]]) != np.signbit(s):
                    idx[i] += 1 if s > 0 else -1
        out[start:start + block] = code[idx] * absmax
    return out.reshape(x.shape)


def adamw_8bit(theta, decayed, grad_fn, lrs, *, b1, b2, eps, wd, block, min_8bit):
    """AdamW on fp32 moments dequantized from 8 bits; the new moments are stored quantized."""
    signed, unsigned = dynamic_map(True), dynamic_map(False)

    def update(t, lr, name, th, g, s):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        th = th - lr / (1 - b1**t) * s["m"] / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        if name in decayed:
            th = th * (1 - lr * wd)
        if th.size >= min_8bit:
            s["m"] = _quantize(s["m"], signed, block, keep_sign=True)
            s["v"] = _quantize(s["v"], unsigned, block, keep_sign=False)
        return th
    return _loop(theta, lrs, grad_fn, update)
