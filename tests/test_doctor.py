"""lwt.doctor: the pre-flight check finds what is missing and says how to fix it."""

import shutil

import pytest

from lwt import doctor, zoo


def test_prediction_scales_with_speed():
    ref = dict(doctor.REFERENCE_INFERENCE_MS)
    same = doctor.predicted_minutes(doctor.REFERENCE_IMAGES_PER_S, ref)
    for nb, times in same.items():
        assert times == pytest.approx((doctor.REFERENCE_SECONDS[nb] / 60,) * 3)
    # the AVX2-only EPYC of issue 27: the probe read 185 images/s there, and 1-thread
    # inference ran 3.3x slower than on the course machine
    slow = doctor.predicted_minutes(
        185.0, {"fp32": ref["fp32"] * 3.3, "int8": ref["int8"] * 5}
    )
    lo, mid, hi = slow["00"]
    base = doctor.REFERENCE_SECONDS["00"] / 60
    s = (doctor.REFERENCE_IMAGES_PER_S / 185.0 * 3.3) ** 0.5
    assert (lo, hi) == pytest.approx((base, s * base))
    assert mid == pytest.approx((doctor.SCALING * s + 1 - doctor.SCALING) * base)
    # measured there: notebook 00 took 130 s where the course machine took 66 s
    assert lo <= 130 / 66 * base <= hi
    assert abs(mid / base - 130 / 66) < 0.1 * 130 / 66


def test_missing_package_is_a_problem_with_its_fix(monkeypatch):
    monkeypatch.setitem(doctor.PACKAGES, "no_such_package_xyz", "no-such-package")
    lines = doctor.check_packages()
    bad = [ln for ln in lines if ln.startswith("PROBLEM")]
    assert len(bad) == 1 and "no-such-package" in bad[0] and "pip install" in bad[0]


def test_missing_data_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LWT_DATA_DIR", str(tmp_path))
    bad = [ln for ln in doctor.check_data() if ln.startswith("PROBLEM")]
    assert len(bad) == 4 and all("LWT_DATA_DIR" in ln for ln in bad)


def test_corrupted_checkpoint_fails_the_check(monkeypatch, tmp_path, capsys):
    folder = tmp_path / "ck"
    shutil.copytree(zoo.checkpoint_dir(), folder)
    raw = bytearray((folder / "lenet300.pt").read_bytes())
    raw[100] ^= 1
    (folder / "lenet300.pt").write_bytes(bytes(raw))
    monkeypatch.setenv("LWT_CHECKPOINT_DIR", str(folder))
    bad = [ln for ln in doctor.check_checkpoints() if ln.startswith("PROBLEM")]
    assert len(bad) == 1 and "lenet300 " in bad[0] and "git checkout" in bad[0]
    assert doctor.main(probe_seconds=0.2) == 1
    assert "1 problem(s)" in capsys.readouterr().out


def test_a_ready_machine_exits_zero(capsys):
    if any(ln.startswith("PROBLEM") for ln in doctor.check_data()):
        pytest.skip("datasets not available (set LWT_DATA_DIR)")
    assert doctor.main(probe_seconds=0.2) == 0
    out = capsys.readouterr().out
    assert "ready: no problems found" in out and "predicted full-mode minutes" in out


def test_a_corrupted_deployed_file_is_a_problem(monkeypatch, tmp_path):
    """Issue 29: make check did not verify the deployed .onnx files."""
    folder = tmp_path / "ck"
    shutil.copytree(zoo.checkpoint_dir(), folder)
    raw = bytearray((folder / "resnet20-combined.onnx").read_bytes())
    raw[-10] ^= 1
    (folder / "resnet20-combined.onnx").write_bytes(bytes(raw))
    monkeypatch.setenv("LWT_CHECKPOINT_DIR", str(folder))
    bad = [ln for ln in doctor.check_checkpoints() if ln.startswith("PROBLEM")]
    assert len(bad) == 1 and "resnet20-combined.onnx" in bad[0]
