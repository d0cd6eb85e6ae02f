"""The job runners: what makes training, processing and transform jobs really run on this machine.

``runner`` is what every runner shares (its thread, the stop reasons, a job slot);
``training_runner``, ``processing_runner`` and ``transform_runner`` drive one job each (the
hyperparameter tuning runner is ``include.emulator.tuning.runner``). For training: ``hosts`` lays
out the per-host /opt/ml stand-in; ``cluster`` and ``process`` run the container process groups;
``entrypoints``, ``network``, ``checkpoints``, ``tensorboard`` and ``folder_sync`` do what their
names say; ``metrics`` applies MetricDefinitions to the log. ``staging`` moves data between S3 and
a job's folders; ``failures`` builds FailureReason; ``transform_data`` splits, batches, filters and
assembles batch transform's records.
"""
