"""The runs of DNW Table 2 a :class:`~rewire.experiments.mobilenet_dnw.config.Config` asks for, in training order.

1. targeted dropout's ρ candidates, then L1 + Anneal's λ candidates, on the first seed (they are chosen on
   its validation accuracy); on the later seeds every candidate, or with ``select_on_first_seed`` only the
   chosen one (row ``td-chosen`` / ``l1_anneal-chosen``: known once the first seed has trained);
2. the ``rows`` on every seed (the ``complete`` graph of a seed before its first lottery-ticket row);
3. the fine-tune rows (after the complete graph), then regular targeted dropout (Table 5; ``td_regular-chosen``
   is the twin of the chosen ρ).

A row named ``<group>-chosen`` has ``choose_from`` in its settings: the candidate keys of its group.

With ``final_on_all_images`` (the paper scale) choosing and reporting are separate runs (``settings["phase"]``):

1. ``selection``: every ρ and λ candidate on the first seed, on the training images less the held-out split
   (run name ``<row>-seed<s>-selection``);
2. ``final``, on all the training images: every ρ on every seed (``td-chosen`` with ``select_on_first_seed``),
   the chosen λ only (``l1_anneal-chosen``: Table 2 has one L1 + Anneal row; the grid is a search), then the
   rows, fine-tuning and regular targeted dropout as above.
"""

from __future__ import annotations

from rewire.experiments.base import RunSpec
from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.rows import Row, candidates, expand_rows

__all__ = ["plan", "CHOSEN", "SELECTION", "FINAL", "candidate_groups"]

CHOSEN = "chosen"  # the suffix of a row chosen on validation after the first seed
SELECTION, FINAL = "selection", "final"  # the phases of final_on_all_images (settings["phase"])


def candidate_groups(config: Config) -> dict[str, list[Row]]:
    """The rows chosen among on validation: ``td`` (ρ) and ``l1_anneal`` (λ), in that order."""
    return {
        "td": candidates(config.td_rhos, "td", "rho"),
        "l1_anneal": candidates(config.l1_coefficients, "l1_anneal", "l1"),
    }


def _spec(key: str, seed: int, **settings) -> RunSpec:
    suffix = f"-{SELECTION}" if settings.get("phase") == SELECTION else ""
    return RunSpec(row=key, seed=seed, name=f"{key}-seed{seed}{suffix}", settings=settings)


def _candidate_specs(config: Config, groups: dict[str, list[Row]]) -> list[RunSpec]:
    """The candidates of ρ and λ and the chosen ones (both phases with ``final_on_all_images``)."""
    seeds = list(config.seeds)
    first, rest = seeds[0], seeds[1:]
    specs: list[RunSpec] = []
    if config.final_on_all_images:
        for rows in groups.values():  # selection: every candidate on the first seed, on the reduced split
            if len(rows) > 1:
                specs += [_spec(row.key, first, phase=SELECTION) for row in rows]
        for group, rows in groups.items():  # final: on all the training images
            keys = [r.key for r in rows]
            if len(rows) == 1:
                specs += [_spec(keys[0], seed, phase=FINAL) for seed in seeds]
            elif group == "td" and not config.select_on_first_seed:  # Table 2 reports every ρ
                specs += [_spec(key, seed, phase=FINAL) for key in keys for seed in seeds]
            elif rows:  # one L1 + Anneal row in Table 2 (and the chosen ρ with select_on_first_seed)
                specs += [_spec(f"{group}-{CHOSEN}", seed, choose_from=keys, phase=FINAL) for seed in seeds]
        return specs
    for group, rows in groups.items():
        if not rows:
            continue
        specs += [_spec(row.key, first) for row in rows]
        if config.select_on_first_seed and len(rows) > 1:
            specs += [_spec(f"{group}-{CHOSEN}", seed, choose_from=[r.key for r in rows]) for seed in rest]
        else:
            specs += [_spec(row.key, seed) for row in rows for seed in rest]
    return specs


def plan(config: Config) -> list[RunSpec]:
    """Every run of ``config`` over its seeds, in the order :func:`~rewire.experiments.mobilenet_dnw.run` trains them."""
    seeds = list(config.seeds)
    groups = candidate_groups(config)
    specs = _candidate_specs(config, groups)
    final = {"phase": FINAL} if config.final_on_all_images else {}
    td_keys = [row.key for row in groups["td"]]
    known_td = td_keys[0] if len(td_keys) == 1 else None
    regular = []
    for rho in config.td_regular_rhos:
        if rho != CHOSEN:
            regular.append(Row("td_regular", rho=rho).key)
        elif known_td is not None:
            regular.append("td_regular-" + known_td.partition("-")[2])
        else:
            regular.append(f"td_regular-{CHOSEN}")
    later = [row.key for row in expand_rows(config.rows)]
    later += [row.key for row in candidates(config.finetune_alphas, "finetune", "alpha")]
    later += list(dict.fromkeys(regular))
    for key in later:
        for seed in seeds:
            if key.partition("-")[0] in ("lottery", "finetune"):
                specs.append(_spec("complete", seed, prerequisite_of=key, **final))
            if key == f"td_regular-{CHOSEN}":
                specs.append(_spec(key, seed, choose_from=td_keys, **final))
            else:
                specs.append(_spec(key, seed, **final))
    unique: dict[str, RunSpec] = {}
    for spec in specs:  # a run listed twice (the complete graph of several rows) trains once, at its first place
        unique.setdefault(spec.name, spec)
    return list(unique.values())
