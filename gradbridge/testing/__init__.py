"""Testing code that runs on several backends: assertions (``assertions``), the pytest plugin
(``plugin``), and ``explain`` (``divergence``), which names the statement where two backends
start to disagree.
"""

from gradbridge.testing.assertions import DEFAULT_RTOL, assert_backends_agree, assert_close
from gradbridge.testing.divergence import Divergence, explain

__all__ = ["DEFAULT_RTOL", "Divergence", "assert_backends_agree", "assert_close", "explain"]
