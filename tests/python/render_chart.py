"""Render the Helm chart offline with the real Helm library (helm-python-sdk) and print the
result as JSON: {"lint": <lint report>, "docs": [<parsed manifests>]} or {"error": "..."}.

Usage: render_chart.py <chart dir> <values as JSON>
"""
import json
import sys

import helm_python as helm
import yaml


def main() -> None:
    chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
    lint = helm.lint(chart_dir, values, strict=True)
    try:
        rendered = helm.Chart.load(chart_dir).render(
            values, name="tcr", namespace="registry", is_install=True
        )
    except helm.HelmError as e:
        print(json.dumps({"lint": lint, "error": str(e)}))
        return
    docs = []
    for text in rendered.values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    print(json.dumps({"lint": lint, "docs": docs}))


if __name__ == "__main__":
    main()
