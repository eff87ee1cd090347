"""The one module where kfound may reach Keras's and KerasTuner's private internals.

Every private touch lives here, in the section of its library, with a comment naming the
public API whose absence makes it necessary, and a test in tests/test_compat.py that
fails with a clear message when the installed version no longer has it. Everything else
in kfound uses public APIs only (tests/test_compat.py checks that no other module
imports `keras.src`). setup.cfg gives the versions tested.

## Keras

No private touch remains. The three that were, and the public seams that replaced them:

- `SparseInitializer` subclassed `keras.src...RandomInitializer`; it now subclasses the
  public `keras.initializers.Initializer` and keeps Keras's seed semantics itself.
- `replace_batchnorm` imported `Functional` from `keras.src` to test a model's kind; it
  now tests `isinstance(model, keras.Sequential)` or a `keras.Model` with `outputs`
  (what Functional models have and subclassed ones lack), and edits the graph with
  `keras.models.clone_model(clone_function=..., call_function=..., recursive=True)`.
- `WeightNorm` wrote the wrapped layer's private `_kernel` with `object.__setattr__`; it
  now calls the layer inside a `keras.StatelessScope` that maps its kernel variables to
  the normalized kernels, the seam `Layer.stateless_call` and the JAX trainer use.

tests/test_compat.py checks the public behaviour each of them relies on.
"""
