"""Labels and file names shown in Markdown reports are text: no markup, links, HTML or broken code spans."""

from __future__ import annotations

import re

from app.core.ingest import IngestReport, Rejection
from app.core.markup import code, escape_inline, escape_markdown
from app.engine.model_report import ModelCheck

HOSTILE_LABEL = "**bold** <img src=x onerror=alert(1)> [link](http://evil)"
HOSTILE_NAME = "a`b``c <script>x</script> [x](http://evil).png"


def _unescaped(text: str, char: str) -> list[int]:
    """Positions of `char` in Markdown source `text` that no backslash escapes."""
    return [m.start() for m in re.finditer(rf"(?<!\\)(?:\\\\)*{re.escape(char)}", text)]


def assert_inert(text: str) -> None:
    """No HTML, link or emphasis from user text; the app's own bold row names and <code> tags are allowed."""
    assert "<img" not in text and "<script" not in text and "**bold**" not in text and not _unescaped(text, "](")
    text = re.sub(r"\*\*[A-Z][\w' ,]+:?\*\*|</?code>|`[\w.-]+`", "", text)
    assert not _unescaped(text, "`") and not _unescaped(text, "[") and not _unescaped(text, "*")


def test_escape_markdown_makes_text_inert() -> None:
    out = escape_markdown(HOSTILE_LABEL)
    assert_inert(out)
    assert out == r"\*\*bold\*\* &lt;img src=x onerror=alert\(1\)&gt; \[link\]\(http\://evil\)"
    assert escape_markdown("line one\n# heading") == r"line one \# heading"
    assert escape_markdown("plain words 12") == "plain words 12"


def test_escape_inline_leaves_sentences_readable() -> None:
    sentence = "'.txt' is not an image (JPEG or PNG); re-export it, then import #2 again!"
    assert escape_inline(sentence) == sentence
    assert_inert(escape_inline(HOSTILE_LABEL))


def test_code_keeps_plain_names_in_backticks_and_escapes_the_rest() -> None:
    assert code("resnet18") == "`resnet18`" and code("my-photo_1.png") == "`my-photo_1.png`"
    out = code(HOSTILE_NAME)
    assert out.startswith("<code>") and out.endswith("</code>")
    assert_inert(out)


def test_import_report_escapes_names_labels_and_notes() -> None:
    from app.ui.uploads import report_markdown

    report = IngestReport()
    report.rejected.append(Rejection(f"/upload/abc/{HOSTILE_NAME}", "The file is corrupt; re-export it."))
    report.rejected.append(Rejection(HOSTILE_NAME, f"'{HOSTILE_LABEL}' is not a supported image type."))
    report.new_labels = [HOSTILE_LABEL]
    text = report_markdown(report, notes=[f"3 row(s) of {HOSTILE_NAME} were matched."])
    assert_inert(text)
    assert "The file is corrupt; re-export it." in text and "&lt;img" in text


def test_model_report_escapes_labels_file_names_and_keys() -> None:
    check = ModelCheck(
        arch="resnet18",
        source="file",
        weights=HOSTILE_NAME,
        file_format="a safetensors file",
        parameters=10,
        backbone_parameters=8,
        input_size=(3, 32, 32),
        num_features=4,
        file_classes=2,
        labels=[HOSTILE_LABEL, "dog"],
        head="kept",
        message=f"The model's classes ({HOSTILE_LABEL}) are your labels.",
        loaded=1,
        expected=2,
        missing=[HOSTILE_NAME],
        unexpected=["fc.weight"],
        dropped=[HOSTILE_NAME],
        image=HOSTILE_NAME,
        output_shape=(1, 2),
        top=[(HOSTILE_LABEL, 0.9)],
        own_top=[],
        notes=[f"The head comes from {HOSTILE_NAME}."],
    )
    text = check.markdown()
    assert_inert(text)
    assert "`resnet18` (local file)" in text and "`fc.weight`" in text
