"""Golden values of the contrastive losses (src/ml/loss.rs) from PyTorch.

A plain, loop-per-anchor reference of every loss variant (Table 2 / Table 4 of Chen et al.
2020 with the options of `LossConfig`), computed in float64 with autograd on fixed small
inputs. It writes src/ml/training/loss_goldens.json: for each variant its config, inputs, loss value
and gradient with respect to z1 and z2, which the Rust unit tests compare against (they
never need Python).

    python bench/loss_goldens.py            # rewrites src/ml/training/loss_goldens.json

Definitions (the module doc of src/ml/loss.rs says the same in words):
- anchors are the 2N rows of cat(z1, z2); the positive of row i is row (i + N) mod 2N;
- negatives: "both_views" every other row but the positive; "one_view" the other rows of
  the positive's view;
- NT-Xent: cross entropy over [positive, negatives] / tau;
- NT-Logistic: -log sigmoid(s_p / tau) - sum_n w log sigmoid(-s_n / tau);
- margin: sum_n w max(s_n - s_p + m, 0);
- w = 1 / |M_i| ("mean") or 1 ("sum"); M_i = the negatives, or with semi-hard mining the
  closest negative less similar than the positive ("closest") or all of those, within the
  margin for the margin loss ("band"); with none such, the least similar negative
  ("least_similar") or nothing ("none").
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

INPUTS = {
    # Four images, three dimensions: no anchor lacks a semi-hard negative under "closest".
    "A": (
        [[0.9, 0.1, -0.3], [0.2, 0.8, 0.1], [-0.5, 0.4, 0.7], [0.3, -0.6, 0.2]],
        [[0.7, 0.3, -0.1], [0.6, 0.5, 0.2], [-0.4, -0.2, 0.9], [0.1, -0.8, -0.3]],
    ),
    # A with three-decimal values: unnormalised dot products of A tie.
    "C": (
        [[0.913, 0.127, -0.284], [0.236, 0.771, 0.142], [-0.528, 0.389, 0.716], [0.301, -0.633, 0.187]],
        [[0.694, 0.329, -0.093], [0.587, 0.524, 0.219], [-0.412, -0.176, 0.884], [0.122, -0.791, -0.305]],
    ),
    # Two images whose anchors 0 and 2 have their positive least similar of all: the
    # semi-hard fallback.
    "B": ([[1.0, 0.0], [0.9, 0.1]], [[-1.0, 0.0], [0.8, 0.2]]),
}

DEFAULTS = dict(
    kind="nt_xent",
    temperature=0.5,
    l2_norm=True,
    margin=1.0,
    negatives="both_views",
    negative_weighting="mean",
    semi_hard=False,
    semi_hard_pick="closest",
    semi_hard_fallback="least_similar",
)


def negatives(i, n, which):
    p = (i + n) % (2 * n)
    if which == "both_views":
        rows = range(2 * n)
    else:
        rows = range(n, 2 * n) if i < n else range(n)
    return [j for j in rows if j not in (i, p)]


def chosen(s, i, n, c):
    negs = negatives(i, n, c["negatives"])
    if not c["semi_hard"]:
        return negs
    sp = s[i, (i + n) % (2 * n)].item()
    farther = [j for j in negs if s[i, j].item() < sp]
    if c["semi_hard_pick"] == "closest":
        # max() keeps the first of equal values, as the Rust code does.
        semi = [max(farther, key=lambda j: s[i, j].item())] if farther else []
    elif c["kind"] == "margin":
        semi = [j for j in farther if s[i, j].item() > sp - c["margin"]]
    else:
        semi = farther
    if semi:
        return semi
    if c["semi_hard_fallback"] == "least_similar":
        return [min(negs, key=lambda j: s[i, j].item())]
    return []


def loss_of(z1, z2, c):
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    if c["l2_norm"]:
        z = F.normalize(z, dim=1)
    s = z @ z.T
    sd = s.detach()
    per_anchor = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        if c["kind"] == "nt_xent":
            cols = [p] + negatives(i, n, c["negatives"])
            logits = s[i, cols] / c["temperature"]
            per_anchor.append(-F.log_softmax(logits, dim=0)[0])
            continue
        m_i = chosen(sd, i, n, c)
        w = 1.0 / max(len(m_i), 1) if c["negative_weighting"] == "mean" else 1.0
        if c["kind"] == "nt_logistic":
            tau = c["temperature"]
            l = -F.logsigmoid(s[i, p] / tau)
            for j in m_i:
                l = l - w * F.logsigmoid(-s[i, j] / tau)
        else:
            l = torch.zeros(())
            for j in m_i:
                l = l + w * torch.clamp(s[i, j] - s[i, p] + c["margin"], min=0)
        per_anchor.append(l)
    return torch.stack(per_anchor).mean()


CASES = [
    # (name, input, options differing from DEFAULTS)
    ("nt_xent_tau05", "A", {}),
    ("nt_xent_tau01", "A", {"temperature": 0.1}),
    ("nt_xent_no_l2_tau1", "A", {"temperature": 1.0, "l2_norm": False}),
    ("nt_xent_one_view", "A", {"negatives": "one_view"}),
    ("nt_xent_one_view_no_l2", "A", {"negatives": "one_view", "temperature": 1.0, "l2_norm": False}),
    ("nt_logistic_mean", "A", {"kind": "nt_logistic"}),
    ("nt_logistic_sum", "A", {"kind": "nt_logistic", "negative_weighting": "sum"}),
    ("nt_logistic_one_view_no_l2", "A", {"kind": "nt_logistic", "negatives": "one_view", "temperature": 0.2, "l2_norm": False}),
    ("nt_logistic_sh_closest", "A", {"kind": "nt_logistic", "semi_hard": True}),
    ("nt_logistic_sh_band", "A", {"kind": "nt_logistic", "semi_hard": True, "semi_hard_pick": "band"}),
    ("nt_logistic_sh_band_sum_one_view", "A", {"kind": "nt_logistic", "semi_hard": True, "semi_hard_pick": "band", "negative_weighting": "sum", "negatives": "one_view"}),
    ("nt_logistic_sh_closest_one_view_no_l2", "C", {"kind": "nt_logistic", "semi_hard": True, "negatives": "one_view", "temperature": 1.0, "l2_norm": False}),
    ("margin_mean", "A", {"kind": "margin", "margin": 0.5}),
    ("margin_sum", "A", {"kind": "margin", "margin": 0.5, "negative_weighting": "sum"}),
    ("margin_one_view_no_l2", "C", {"kind": "margin", "margin": 0.8, "negatives": "one_view", "l2_norm": False}),
    ("margin_sh_closest", "A", {"kind": "margin", "margin": 0.5, "semi_hard": True}),
    ("margin_sh_band", "A", {"kind": "margin", "margin": 0.5, "semi_hard": True, "semi_hard_pick": "band"}),
    ("margin_sh_closest_one_view_sum", "A", {"kind": "margin", "margin": 0.4, "semi_hard": True, "negatives": "one_view", "negative_weighting": "sum"}),
    ("margin_sh_closest_no_l2", "C", {"kind": "margin", "margin": 1.6, "semi_hard": True, "l2_norm": False}),
    ("fallback_nt_logistic_least_similar", "B", {"kind": "nt_logistic", "semi_hard": True}),
    ("fallback_nt_logistic_none", "B", {"kind": "nt_logistic", "semi_hard": True, "semi_hard_fallback": "none"}),
    ("fallback_margin_least_similar", "B", {"kind": "margin", "margin": 1.6, "semi_hard": True}),
    ("fallback_margin_none", "B", {"kind": "margin", "margin": 1.6, "semi_hard": True, "semi_hard_fallback": "none"}),
    ("margin_sh_band_one_view", "A", {"kind": "margin", "margin": 0.5, "semi_hard": True, "semi_hard_pick": "band", "negatives": "one_view"}),
]


def check_well_posed(z1, z2, c):
    """Goldens away from ties and kinks: a semi-hard choice or a hinge that a rounding
    could flip would make a float32 check (or another library) disagree for no reason."""
    n = z1.shape[0]
    z = torch.cat([z1, z2]).detach()
    if c["l2_norm"]:
        z = F.normalize(z, dim=1)
    s = z @ z.T
    for i in range(2 * n):
        sp = s[i, (i + n) % (2 * n)].item()
        vals = sorted([s[i, j].item() for j in negatives(i, n, c["negatives"])] + [sp])
        gaps = [b - a for a, b in zip(vals, vals[1:])]
        assert not c["semi_hard"] or min(gaps) > 1e-6, (c, i, "near tie among similarities")
        if c["kind"] == "margin":
            for j in negatives(i, n, c["negatives"]):
                assert abs(s[i, j].item() - sp + c["margin"]) > 1e-6, (c, i, j, "hinge at its kink")


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "src", "ml", "training", "loss_goldens.json")
    goldens = []
    for name, key, opts in CASES:
        c = dict(DEFAULTS, **opts)
        z1 = torch.tensor(INPUTS[key][0], requires_grad=True)
        z2 = torch.tensor(INPUTS[key][1], requires_grad=True)
        check_well_posed(z1, z2, c)
        loss = loss_of(z1, z2, c)
        loss.backward()
        goldens.append(
            {
                "name": name,
                # Only the fields that differ from LossConfig's defaults (and the kind).
                "config": {k: c[k] for k in DEFAULTS if k in opts or k == "kind"},
                "z1": INPUTS[key][0],
                "z2": INPUTS[key][1],
                "loss": loss.item(),
                "grad_z1": z1.grad.tolist(),
                "grad_z2": z2.grad.tolist(),
            }
        )
        print(f"{name:40s} {loss.item():.12f}", file=sys.stderr)
    head = {"generated_by": "bench/loss_goldens.py", "torch": torch.__version__, "dtype": "float64"}
    with open(out, "w") as f:
        # One variant a line, so a diff shows which variants changed.
        f.write(json.dumps(head)[:-1] + ', "goldens": [\n')
        f.write(",\n".join(json.dumps(g) for g in goldens))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
