"""Wire formats to model inputs: one small decoder per format, one prediction step for all.

Every format a client speaks becomes the same thing, :class:`~.columns.Columns`: one column per
model input in ``model.feature_names`` order (a float64 array for a numeric input, a list of
``str | None`` for a categorical one) and the row count. The blueprints read the body, call the
format's decoder, predict with :func:`~.columns.predict` (``LinearModel.predict_columns``, the
sum ``/predict`` uses) and encode the answer:

    columns.py     what a decoded request is; which datatype each model input takes
                   (input_datatypes: the one place that decides); JSON values, rows and
                   columns to model columns; predict
    tensors.py     Open Inference Protocol tensors (JSON or binary values, BYTES included) and
                   their two layouts to model columns
    oip_json.py    the protocol's JSON inference request (and the binary extension's header)
    oip_binary.py  the binary tensor data extension: the body's two parts, binary responses
    v1.py          KServe V1: {"instances": [...]}
    mlflow.py      MLflow's JSON scoring bodies: dataframe_split, dataframe_records,
                   instances, inputs
    csv_rows.py    CSV rows (MLflow's text/csv body)

Compressed bodies are inflated before any of these sees them (``service.http.body``).
"""
