"""kvc-eval in-process on the bundled model (skipped when the model files are absent)."""
import pytest

import kvcompress
from conftest import models_dir

MODELS = models_dir()
needs_models = pytest.mark.skipif(
    not (MODELS / "stories260K.bin").exists(), reason=f"no model files in {MODELS} (set KVC_MODELS_DIR)"
)


def model_args():
    return ["--model", str(MODELS / "stories260K.bin"), "--tokenizer", str(MODELS / "tok512.bin"),
            "--text", str(MODELS / "tinystories_val.txt")]


@needs_models
def test_decode_one_window_returns_the_report():
    result = kvcompress.evaluate(model_args() + ["--windows", "1", "--stack", "full", "--stack", "h2o:budget=64", "-q"])
    assert result["protocol"] == "decode"
    assert result["windows"] == 1
    assert [s["stack"] for s in result["stacks"]] == ["full", "h2o:budget=64"]
    assert result["reference"]["perplexity"] > 1
    assert "full" in result["table"] and result["output_dir"] is None


@needs_models
def test_reports_go_to_the_given_folder(tmp_path):
    result = kvcompress.evaluate(model_args() + ["--windows", "1", "--stack", "full", "-q", "-o", str(tmp_path)])
    assert result["output_dir"] == str(tmp_path)
    assert (tmp_path / "results.json").exists()


def test_list_prints_the_components():
    result = kvcompress.evaluate(["--list"])
    assert "h2o" in result["table"]
    assert set(result) == {"table", "output_dir"}
