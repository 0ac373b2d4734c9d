"""How much compute a suite still needs, from what its finished runs measured.

A suite like ``benchmarks/cpu.yaml`` takes several sittings; planning them needs the time left, and the best guide
is the seconds the records of the same model on the same composition stored (training loop, and the suite's
attacks), not a figure written before anything ran.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Any

from mailnet.bench.runner import counted, stored_units


@dataclass
class Pending:
    """One job of the suite and what of it is left."""

    composition: str
    model: str
    train: bool           # weights to train (again): no record, or a record whose run folder has no weights left
    attack: bool          # the suite's attacks not stored yet
    attack_done_s: float  # seconds already spent on stored units of an unfinished attack


def estimate_left(pending: list[Pending], records: list[dict[str, Any]], akey: str | None) -> str:
    """One line: what is left, and the compute it should take (one job at a time). Training and attacks count the
    mean measured seconds of finished runs of the same model and composition; an attack with no such peer counts the
    mean seconds per unit that unfinished sittings of that model and composition measured, times the number of
    units the model's finished attacks (on any composition) had. Jobs with neither are named, not guessed."""
    if not pending:
        return "nothing left: every run is trained" + (" and attacked" if akey else "")
    train_s: dict[tuple, list[float]] = defaultdict(list)
    attack_s: dict[tuple, list[float]] = defaultdict(list)
    unit_s: dict[tuple, list[float]] = defaultdict(list)
    units: dict[str, int] = {}
    for r in records:
        peer = (r.get("composition"), r.get("model"))
        if r.get("train_seconds"):
            train_s[peer].append(float(r["train_seconds"]))
        entry = (r.get("attacks") or {}).get(akey) if akey else None
        if entry and entry.get("seconds"):
            attack_s[peer].append(float(entry["seconds"]))
            n = len({x["unit"] for x in entry.get("records", []) if x.get("unit")})  # older records: no units
            units[peer[1]] = max(units.get(peer[1], 0), n)
        partial = (r.get("attacks_partial") or {}).get(akey) if akey else None
        stored = stored_units(r, akey) if partial else 0
        if stored and partial.get("seconds"):
            unit_s[peer].append(float(partial["seconds"]) / stored)
    total_train = total_attack = 0.0
    unknown: set[str] = set()
    for p in pending:
        peer = (p.composition, p.model)
        if p.train:
            if train_s[peer]:
                total_train += mean(train_s[peer])
            else:
                unknown.add(f"{p.composition}/{p.model}")
        if p.attack:
            if attack_s[peer]:
                total_attack += max(0.0, mean(attack_s[peer]) - p.attack_done_s)
            elif unit_s[peer] and units.get(p.model):
                total_attack += max(0.0, mean(unit_s[peer]) * units[p.model] - p.attack_done_s)
            else:
                unknown.add(f"{p.composition}/{p.model}")
    n_train, n_attack = sum(p.train for p in pending), sum(p.attack for p in pending)
    if not any(v for d in (train_s, attack_s, unit_s) for v in d.values()):  # nothing measured: 0.0 h would mislead
        return (f"left: {counted(n_train, 'run')} to train, {counted(n_attack, 'run')} to attack; no estimate of the "
                "compute yet (nothing of this suite has finished to measure it by)")
    text = (f"left: {counted(n_train, 'run')} to train, {counted(n_attack, 'run')} to attack; about "
            f"{(total_train + total_attack) / 3600:.1f} h of compute run one job at a time (training "
            f"{total_train / 3600:.1f} h, attacks {total_attack / 3600:.1f} h), from the seconds the finished runs "
            "and attack units of the same model and composition measured")
    if unknown:
        text += f"; not counted, nothing measured yet for: {', '.join(sorted(unknown))}"
    return text
