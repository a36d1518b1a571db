"""The built-in experiments, one module each, written with the same API as a user's own.

Each module defines one function named like the module, decorated with ``@experiment``; adding
a built-in means adding a module here (and its name to ``ORDER`` to place it in the default
grid's order, cheap ones first).
"""

ORDER = ("linalg", "regression", "bayes", "mlp_gradients", "newton", "timing")
