"""The built-in recipes, one module each; ``lstm-recipes list`` finds them by file name."""
