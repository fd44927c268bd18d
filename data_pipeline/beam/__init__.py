"""The Apache Beam engine of `python -m data_pipeline.build` (`pip install -e .[beam]`)."""
