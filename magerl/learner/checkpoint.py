"""Checkpoints: weights in safetensors, optimizer state and counters beside them.

Each checkpoint is a folder `ckpt-UPDATES/` written as `ckpt-UPDATES.tmp/`, every file
fsynced, then renamed into place and the parent fsynced: a crash or a failed write
leaves the previous checkpoints intact. The last K are kept. Resuming takes the newest
checkpoint that loads completely, skipping (and reporting) damaged ones. Nothing is
unpickled: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from magerl.model.network import ModelConfig, PolicyNet, widen_inputs

PREFIX = "ckpt-"


@dataclass
class Checkpoint:
    path: Path
    model: PolicyNet
    state: dict[str, Any]  # counters and settings (JSON)
    optimizer: dict[str, Any] | None  # torch optimizer state_dict, when saved


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _optimizer_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(directory: Path, updates: int, model: PolicyNet, optimizer: torch.optim.Optimizer | None,
         state: dict[str, Any], keep: int = 3) -> Path:
    """Write checkpoint `updates` atomically and prune to the newest `keep`. Raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{updates:09d}"
    tmp = directory / f"{PREFIX}{updates:09d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        meta: dict[str, Any] = {"updates": updates, "model": model.config.to_dict(), **state}
        if optimizer is not None:
            tensors, optimizer_meta = _optimizer_tensors(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer"] = optimizer_meta
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(".tmp")]
    return sorted(found, key=lambda p: p.name, reverse=True)


def load(path: Path, with_optimizer: bool = True) -> Checkpoint:
    """Load one checkpoint folder; raises ValueError (naming the file) when it is damaged."""
    try:
        meta = json.loads((path / "state.json").read_text())
        model = PolicyNet(ModelConfig(**meta["model"]))
        saved = load_file(str(path / "model.safetensors"))
        tensors = widen_inputs(model, saved)
        model.load_state_dict(tensors)
        optimizer = None
        # Adam's moments of a widened weight have the old shape: such a run restarts them.
        widened = any(tensors[k] is not saved[k] for k in saved)
        if with_optimizer and "optimizer" in meta and not widened:
            optimizer = _optimizer_state(load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    except Exception as exc:  # json, safetensors, shapes: each its own type
        raise ValueError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from exc
    return Checkpoint(path, model, meta, optimizer)


def load_latest(directory: Path, with_optimizer: bool = True) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that loads, and the problems with newer damaged ones."""
    problems = []
    for path in list_checkpoints(directory):
        try:
            return load(path, with_optimizer), problems
        except ValueError as exc:
            problems.append(str(exc))
    return None, problems


def shipped_policy() -> Path:
    """The checkpoint shipped inside the package (`policy:default`); its recipe is in its state.json."""
    return Path(str(resources.files("magerl.model") / "default"))


def _spec_path(spec: str) -> Path:
    """The folder a policy spec names; `default` is the shipped one."""
    return shipped_policy() if spec == "default" else Path(spec).expanduser()


def find(spec: str, deck: str | None = None) -> Checkpoint:
    """A checkpoint folder as given, or the newest loadable one in a run or checkpoints folder.

    `default` names the shipped checkpoint. In a policy set, the member that plays `deck`.
    """
    path = _spec_path(spec)
    member = set_member(path, deck)
    if member is not None:
        return load(member, with_optimizer=False)
    if (path / "state.json").exists():
        return load(path, with_optimizer=False)
    for candidate in (path / "checkpoints", path):
        ckpt, _ = load_latest(candidate, with_optimizer=False)
        if ckpt is not None:
            return ckpt
    raise ValueError(f"{spec}: no checkpoint found (give a checkpoint folder or a run folder)")


def load_policy(spec: str, deck: str | None = None) -> tuple[PolicyNet, int]:
    """The policy of `find(spec, deck)` and its version."""
    ckpt = find(spec, deck)
    return ckpt.model, int(ckpt.state.get("version", ckpt.state["updates"]))


# -- policy sets: one network per deck ----------------------------------------------
# Training on one deck moved that deck where runs on all four stayed level (results.md,
# item 17), so a set holds a network per deck it lists and one for every other deck.
# The agent picks its network once, at the start of a game, from the deck it plays:
# the same decision time as a single network.
SET_FILE = "policy-set.json"
OTHERS = "others"


def set_member(path: Path, deck: str | None) -> Path | None:
    """The checkpoint folder of the set at `path` that plays `deck` (the set's `others` for a
    deck it does not list, or no deck); None when `path` is not a policy set."""
    file = path / SET_FILE
    if not file.exists():
        return None
    try:
        entry = json.loads(file.read_text())
        name = entry["decks"].get(deck, entry[OTHERS]) if deck is not None else entry[OTHERS]
        if not isinstance(name, str) or Path(name).name != name:
            raise ValueError(f"member {name!r} is not a folder name")
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{file}: not a policy set ({type(exc).__name__}: {exc})") from exc
    return path / name


def locate(spec: str) -> Path:
    """The folder a policy spec names: a policy set (each member checked), or the checkpoint `find` loads."""
    path = _spec_path(spec)
    checkpoint = find(spec)  # a set's others: a damaged set file is named here
    if not (path / SET_FILE).exists():
        return checkpoint.path
    for deck in json.loads((path / SET_FILE).read_text()).get("decks") or {}:
        find(spec, deck)
    return path


def _lineage(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """The compute of a checkpoint and of each base it was trained from, newest first
    (a recipe that records none is left out)."""
    computes = []
    while recipe:
        if recipe.get("compute"):
            computes.append(recipe["compute"])
        recipe = (recipe.get("base") or {}).get("recipe") or {}
    return computes


def _compute_beyond(recipe: dict[str, Any], shared: dict[str, Any]) -> dict[str, float | None]:
    """A checkpoint's training compute beyond the newest checkpoint of its lineage that is also
    in `shared`'s (all of it when none is): a run continued from a run from the others'
    network counts both runs, and the others' own training once, in the others."""
    def mark(compute: dict[str, Any]) -> tuple:
        return compute.get("episodes"), compute.get("seconds")

    common = {mark(c) for c in _lineage(shared)}
    compute = recipe.get("compute") or {}
    before = next((c for c in _lineage(recipe) if mark(c) in common), {})
    return {key: None if compute.get(key) is None else compute[key] - (before.get(key) or 0)
            for key in ("episodes", "seconds")}


def write_policy_set(out: Path, others: str, decks: dict[str, str], command: str) -> Path:
    """Copy each checkpoint's weights and state into a new set at `out`, written whole or not at all.

    Its recipe counts the others' compute in full and each deck's network's compute beyond
    the training it shares with the others': a deck network trained `--init-from` the
    others' checkpoint costs only its own runs. A policy set given for a deck gives its
    network for that deck, so a set grows from another. Raises ValueError for a checkpoint
    that does not load or an `out` that exists.
    """
    if out.exists():
        raise ValueError(f"{out} exists: give a new folder")
    specs = {OTHERS: (others, None), **{f"deck-{deck}": (spec, deck) for deck, spec in decks.items()}}
    members = {name: find(spec, deck) for name, (spec, deck) in specs.items()}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, ckpt in members.items():
            (tmp / name).mkdir()
            shutil.copyfile(ckpt.path / "model.safetensors", tmp / name / "model.safetensors")
            state = {key: value for key, value in ckpt.state.items() if key != "optimizer"}
            (tmp / name / "state.json").write_text(json.dumps(state, indent=1))
        recipes = {name: ckpt.state.get("recipe") or {} for name, ckpt in members.items()}
        parts = [_compute_beyond(recipe, recipes[OTHERS]) for name, recipe in recipes.items() if name != OTHERS]
        parts.append(recipes[OTHERS].get("compute") or {})
        compute = {key: None if any(p.get(key) is None for p in parts) else round(sum(p[key] for p in parts), 1)
                   for key in ("episodes", "seconds")}
        recipe = {
            "method": "one policy per deck",
            "members": {name: {"checkpoint": str(members[name].path.resolve()), "given": specs[name][0], "recipe": recipes[name]}
                        for name in members},
            "compute": compute,
            "commands": [command],
        }
        entry = {"decks": {deck: f"deck-{deck}" for deck in decks}, OTHERS: OTHERS, "recipe": recipe}
        (tmp / SET_FILE).write_text(json.dumps(entry, indent=1))
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
