"""The service's log: a client's mistake is one INFO line, a server fault keeps its traceback."""

import logging
import sys

from bentoml.exceptions import BadInput

from atelier.serving.runtime import ClientErrorsQuiet


def _record(error: BaseException) -> logging.LogRecord:
    """The record BentoML logs for a request it answers with an error (http_app.log_exception)."""
    try:
        raise error
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/recommend", "POST"), info)


def test_a_client_error_is_one_info_line_even_when_its_text_holds_a_percent_sign():
    record = _record(BadInput('Invalid JSON near "100% silk" at %s'))
    assert ClientErrorsQuiet().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == 'client error on /recommend [POST], answered 400: BadInput: Invalid JSON near "100% silk" at %s'
    assert "Traceback" not in logging.Formatter().format(record)


def test_a_server_fault_keeps_its_level_and_traceback():
    record = _record(RuntimeError("the model is gone"))
    assert ClientErrorsQuiet().filter(record)
    assert record.levelno == logging.ERROR and record.getMessage() == "Exception on /recommend [POST]"
    assert "Traceback" in logging.Formatter().format(record)
