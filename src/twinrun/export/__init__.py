"""Stored records copied to other tools.

- `mlflow`: runs, checks (the verdict, its replicas nested) and studies (the summary, its runs
  nested) into an MLflow tracking store (`export_records`), idempotently;
- `fields`: what each MLflow run holds for a record, as plain data.

MLflow is an optional extra (`pip install 'twinrun[mlflow]'`), imported only when exporting.
"""
