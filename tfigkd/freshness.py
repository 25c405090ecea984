"""Is saved work still current? One answer for every stage.

Every stored result records the recipe that made it: the training data's
fingerprint, the teacher's SHA-256 where one was used, and the settings it
depends on (a run's student settings, a map store's IG settings, a per-view
cache's view recipe, a tuning study's space). A stage reuses or resumes
saved work only when the recorded recipe equals the one it is asked for;
``recipe_diff`` says how they differ, so every refusal names the keys that
changed (``key: old -> new``) and no stage decides "current" its own way.
"""

from __future__ import annotations

from tfigkd.errors import UserError

_LONG = 16  # hashes and fingerprints are shown by their first characters


def _show(value):
    if isinstance(value, str) and len(value) > _LONG:
        return repr(value[:12] + "...")
    return repr(value)


def recipe_diff(recorded, wanted, prefix=""):
    """``"key: old -> new, ..."`` of every differing entry ('' when the recipes are equal).

    Nested dicts are compared key by key (``student.temperature: 2.5 -> 4.0``);
    a missing recorded recipe (None) differs in every key.

    Args:
        recorded: The recipe saved with the earlier work (a dict, or None).
        wanted: The recipe of the current call.
        prefix: Key path of this level (for nested recipes).
    """
    if not isinstance(recorded, dict) or not isinstance(wanted, dict):
        return "" if recorded == wanted else f"{prefix or 'recipe'}: {_show(recorded)} -> " \
                                             f"{_show(wanted)}"
    out = []
    for k in sorted(set(recorded) | set(wanted), key=str):
        a, b = recorded.get(k), wanted.get(k)
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = recipe_diff(a, b, key)
            if sub:
                out.append(sub)
        elif a != b:
            out.append(f"{key}: {_show(a)} -> {_show(b)}")
    return ", ".join(out)


def is_current(recorded, wanted):
    """Whether saved work with recipe ``recorded`` answers a call with recipe ``wanted``."""
    return not recipe_diff(recorded, wanted)


def check_same_recipe(recorded, recipe, folder, what, fix, error=UserError):
    """Refuses to reuse or resume work made with other settings or data.

    The check behind every "reuse a finished result" and "resume a partial
    run" decision (teacher, students, trials), so all stages answer alike.

    Args:
        recorded: The recipe stored with the earlier work (None: written by
            an older tfigkd that did not record one; accepted unchecked).
        recipe: The recipe of the current call (a dict; ``fingerprint`` is
            the training data's fingerprint).
        folder: The folder holding the earlier work (for the message).
        what: e.g. "a teacher trained" or "a partial teacher run (epoch 1 of 4) started".
        fix: What the user can do, e.g. "use another --out folder or delete it".
        error: The exception type raised.

    Raises:
        error: Naming the differing keys (``key: old -> new``).
    """
    if recorded is None:
        return
    if recorded.get("fingerprint") != recipe.get("fingerprint"):
        raise error(
            f"{folder} holds {what} on other data (fingerprint "
            f"{str(recorded.get('fingerprint'))[:12]} vs {str(recipe.get('fingerprint'))[:12]}: "
            f"the data, split, subset or seed changed); {fix}.")
    diff = recipe_diff({k: v for k, v in recorded.items() if k != "fingerprint"},
                       {k: v for k, v in recipe.items() if k != "fingerprint"})
    if diff:
        raise error(f"{folder} holds {what} with other settings ({diff}); {fix}.")
