"""The fallback that lets a learner who is stuck run the rest of a lesson: :func:`use`."""
from __future__ import annotations

from utils.exercises.registry import get
from utils.exercises.rendering import name
from utils.exercises.running import check

_IN_USE: dict[str, str] = {}  # exercise id -> the learner's code that this process's lesson runs


def use(id: str, candidate=None):
    """The learner's ``candidate`` if it passes exercise ``id``, else the course's reference.

    Later cells of a lesson call this, so that a learner who is stuck can still run the lesson.
    """
    ex = get(id)
    result = check(id, candidate)
    reference = name(ex.reference)
    if result:
        print(f"✔ Using your {reference} (it passes {id}).")
        _IN_USE[id] = name(candidate) if not isinstance(candidate, tuple) else reference
        return candidate
    _IN_USE.pop(id, None)
    state = "not attempted yet" if result.status == "not attempted" else "not passing yet"
    print(f"ℹ Exercise {id} is {state}: the rest of this lesson uses the course's reference {reference}. "
          f"Come back to it any time: utils.check(\"{id}\", ...).")
    return ex.reference


def learner_note() -> str:
    """A sentence naming the learner's code that the lesson now runs ('' when it runs only the course's).

    utils.claim adds it to a failing claim, so that the message points at the learner's code, not the lesson.
    """
    if not _IN_USE:
        return ""
    which = ", ".join(f"{i} ({n})" for i, n in sorted(_IN_USE.items()))
    return (f"\nThis run uses your code for exercise {which}. It passed its check, but the claim fails with it: "
            "the likely cause is a difference between your code and the course's that the check does not test "
            f"(compare with utils.solution(\"{sorted(_IN_USE)[-1]}\")), not the lesson. Please report it too: the check "
            "should have caught it.")
