"""The comparisons around the article: the behaviour ``audit`` of any BN builder and
``audit_dropout`` of any dropout builder (``loader`` imports the user's builder), ``compare``
of the BN implementations TF1 code uses (``implementations``) and of stock Keras 3
(``compare_keras3``, with ``keras3_worker`` running Keras 3 in a child process), checkpoint
conversion between namings (``checkpoints``) and the demo's ``export``."""
