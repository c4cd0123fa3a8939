"""Lambda size: each function plus all its layers, unzipped, after `sam build`, against Lambda's 250 MB.

Usage: `python bench/lambda_size.py [--build-dir .aws-sam/build] [--function ApiFunction ...] [--require-build]`.
Reads the built template, finds each function's code and every layer it references (`Ref: SomeLayer`) in
the build folder, sums the size of every file in them and exits 1 if any function is above the limit.
Without --function it sizes every function in the template. With no build it says so and exits 0
(`make bench` runs every bench script), or 2 with --require-build (for a `size` target that runs after
`sam build`).
Lambda's limit: the function's deployment package and all its layers, unzipped, 250 MB (262,144,000 bytes).
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

LIMIT_BYTES = 250 * 1024 * 1024


class _TemplateLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types here
    """A SafeLoader that reads CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) as plain values."""


def _tag(loader: _TemplateLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_TemplateLoader.add_multi_constructor("!", _tag)


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def measure(build_dir: Path, function: str) -> list[tuple[str, int]]:
    """(resource name, unzipped bytes) for the function and each of its layers, in the template's order."""
    template = yaml.load((build_dir / "template.yaml").read_text(encoding="utf-8"), Loader=_TemplateLoader)
    resources = template["Resources"]
    if function not in resources:
        raise SystemExit(f"lambda_size: no resource {function} in {build_dir / 'template.yaml'}")
    properties = resources[function]["Properties"]
    parts = [(function, build_dir / str(properties["CodeUri"]))]
    for layer in properties.get("Layers", []):
        name = layer.get("Ref") if isinstance(layer, dict) else None
        if name is None:
            raise SystemExit(f"lambda_size: {function} uses a layer that is not built here ({layer}): cannot size it")
        parts.append((name, build_dir / str(resources[name]["Properties"]["ContentUri"])))
    return [(name, directory_bytes(path)) for name, path in parts]


def functions(build_dir: Path) -> list[str]:
    """Every function in the built template, in the template's order."""
    template = yaml.load((build_dir / "template.yaml").read_text(encoding="utf-8"), Loader=_TemplateLoader)
    types = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
    return [name for name, resource in template["Resources"].items() if resource["Type"] in types]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument(
        "--function", action="append", dest="functions", help="a function to size (repeatable; default: all)"
    )
    parser.add_argument("--require-build", action="store_true", help="exit 2, not 0, when there is no build")
    args = parser.parse_args(argv)
    if not (args.build_dir / "template.yaml").exists():
        print(f"lambda_size: no built template in {args.build_dir}: run `sam build` first", file=sys.stderr)
        return 2 if args.require_build else 0
    over = 0
    for function in args.functions or functions(args.build_dir):
        sizes = measure(args.build_dir, function)
        total = sum(size for _, size in sizes)
        for name, size in sizes:
            print(f"{name:<24}{size / 1e6:>10.1f} MB")
        verdict = "OK" if total <= LIMIT_BYTES else "OVER THE LIMIT"
        print(f"{'total (unzipped)':<24}{total / 1e6:>10.1f} MB   limit {LIMIT_BYTES / 1e6:.1f} MB   {verdict}\n")
        over += total > LIMIT_BYTES
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
