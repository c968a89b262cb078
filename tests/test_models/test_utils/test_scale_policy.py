import pytest

from san_mm.models.utils import (BNSelection, ScaleEncoder, ScalePolicy,
                                 check_inference_mode)


def resolve(mode, size, **kwargs):
    return ScalePolicy(ScaleEncoder()).resolve(size, mode, **kwargs)


@pytest.mark.parametrize('mode', ['proxy', 'ideal', 'calibrated', 'data_free'])
def test_every_mode_agrees_at_training_sizes(mode):
    # Encodings are a few float64 ops (error ~1e-16): approx's default rel 1e-6
    # is far above that and far below the >= 0.025 between neighbouring sizes'
    # encodings (here and below).
    for index, size in enumerate((224, 192, 160, 128, 96)):
        state = resolve(mode, size)
        assert state.bn == BNSelection('set', index)
        assert state.encoding == pytest.approx(0.7 * size / 224)


def test_unseen_size_modes():
    assert resolve('proxy', 200).encoding == pytest.approx(0.6)
    assert resolve('proxy', 200).bn == BNSelection('set', 1)
    ideal = resolve('ideal', 200)
    assert ideal.encoding == pytest.approx(0.625)
    assert ideal.bn == BNSelection('set', 1)
    free = resolve('data_free', 168)
    assert free.encoding == pytest.approx(0.525)
    assert free.bn == BNSelection('interpolate', 2, upper_index=1, alpha=0.25)
    calibrated = resolve('calibrated', 168, calibrated_sizes=[168])
    assert calibrated.bn == BNSelection('calibrated', 2, size=168)
    with pytest.warns(UserWarning, match='no calibrated BN statistics'):
        fallback = resolve('calibrated', 176)
    assert fallback.bn.kind == 'interpolate'
    with pytest.warns(UserWarning, match='outside the trained range'):
        assert resolve('data_free', 64).bn.index == 4


def test_training_forward_only_at_training_sizes():
    with pytest.raises(ValueError, match=(
            r'resolution 200.*add 200 to train_sizes, or call model\.eval')):
        resolve('proxy', 200, training=True)


def test_unknown_mode():
    with pytest.raises(ValueError, match=(
            r"'exact'.*--cfg-options inference_mode=calibrated")):
        check_inference_mode('exact')


def test_fallback_warnings_name_the_tool_that_helps():
    with pytest.warns(UserWarning, match=(
            r'resolution 176.*calibrate_bn\.py CONFIG CKPT --sizes 176')):
        resolve('calibrated', 176)
    with pytest.warns(UserWarning, match=(
            r'resolution 64 is outside the trained range 96\.\.224.*'
            r'calibrate_bn\.py')):
        resolve('data_free', 64)
