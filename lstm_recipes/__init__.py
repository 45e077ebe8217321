"""lstm-recipes: LSTM recipes for Keras 3, one per sequence topology.

Importing this package does not import TensorFlow; the modules that need it import it themselves.
"""

__version__ = "0.1.0"
