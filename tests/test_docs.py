"""The docs hold together: the configuration reference is what the code's help texts make, and every relative link
in the README and docs/ leads to a file that exists."""

import re

import pytest
from conftest import REPO

from finetune.docs import COMMAND, REFERENCE, render

# [text](target) and ![alt](target); the target ends at a space (a title) or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
PAGES = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_configuration_reference_is_current():
    assert REFERENCE.is_file(), f"{REFERENCE} is missing: run `{COMMAND}`."
    assert REFERENCE.read_text(encoding="utf-8") == render(), f"{REFERENCE} is stale: run `{COMMAND}`."


def test_configuration_reference_lists_every_argument():
    from finetune.config import DataArguments, ModelArguments
    from finetune.pretrain import PretrainArguments

    text = render()
    for argument_class in (ModelArguments, DataArguments, PretrainArguments):
        for name in argument_class.__dataclass_fields__:
            assert f"| `{name}` |" in text, name
    for name in ("early_stopping_patience", "gpus", "seeds", "eval_strategy", "--top_k", "--test_file", "--max_size"):
        assert f"`{name}" in text, name
    assert "| `learning_rate` |" not in text  # TrainingArguments: only the fields finetune adds or changes


def headings(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercase, punctuation dropped, spaces as hyphens."""
    titles = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def without_code(path) -> str:
    return re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)  # code holds no links


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_lead_to_files_and_headings(page):
    broken = []
    for target in LINK.findall(without_code(page)):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in headings(without_code(linked))):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)} links to missing files or headings: {broken}"
