"""What the lessons' check tests share."""
import utils


def fails_with(id, candidate, phrase):
    """``utils.check(id, candidate)`` rejects the candidate as wrong (not "not attempted"), and its
    message names the mistake with ``phrase`` (case-insensitive). Returns the result."""
    result = utils.check(id, candidate)
    assert not result, f"{id} accepted a wrong answer"
    assert result.status == "fail", result
    assert phrase.lower() in result.message.lower(), result.message
    return result
