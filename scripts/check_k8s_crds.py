"""Schema checks for the custom resources kubernetes-validate does not know (run by check-k8s.sh).

JobSet: k8s/schemas/jobset-v1alpha2.schema.json (strict), and every replicated job's template as
a batch/v1 Job against Kubernetes' own strict schema. Usage: check_k8s_crds.py K8S_VERSION FILE...
"""
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "k8s" / "schemas"


def check_jobset(doc, version):
    schema = json.loads((SCHEMAS / "jobset-v1alpha2.schema.json").read_text())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    for i, rj in enumerate(doc.get("spec", {}).get("replicatedJobs", [])):
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{doc['metadata']['name']}-{rj.get('name')}"}}
        job["spec"] = rj.get("template", {}).get("spec", {})
        try:
            kubernetes_validate.validate(job, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"spec/replicatedJobs/{i}/template: {e.message} at {'.'.join(map(str, e.path))}")
    return errors


def main():
    version, files = sys.argv[1], sys.argv[2:]
    failed = False
    for name in files:
        for doc in yaml.safe_load_all(pathlib.Path(name).read_text()):
            if not doc or doc.get("kind") != "JobSet":
                continue
            errors = check_jobset(doc, version)
            for e in errors:
                print(f"ERROR {name}: jobset/{doc['metadata']['name']}: {e}")
            if not errors:
                print(f"INFO {name} passed for resource jobset/{doc['metadata']['name']}")
            failed |= bool(errors)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
