import pytest

from san_mm.models.utils import BNSelection, ScaleEncoder, ScalePolicy


def policy(mode):
    return ScalePolicy(ScaleEncoder(), mode)


@pytest.mark.parametrize('mode', ['proxy', 'ideal', 'calibrated', 'data_free'])
def test_every_mode_agrees_at_training_sizes(mode):
    # Encodings are a few float64 ops (error ~1e-16): approx's default rel 1e-6
    # is far above that and far below the >= 0.025 between neighbouring sizes'
    # encodings (here and below).
    for index, size in enumerate((224, 192, 160, 128, 96)):
        state = policy(mode).resolve(size)
        assert state.bn == BNSelection('set', index)
        assert state.encoding == pytest.approx(0.7 * size / 224)


def test_unseen_size_modes():
    assert policy('proxy').resolve(200).encoding == pytest.approx(0.6)
    assert policy('proxy').resolve(200).bn == BNSelection('set', 1)
    ideal = policy('ideal').resolve(200)
    assert ideal.encoding == pytest.approx(0.625)
    assert ideal.bn == BNSelection('set', 1)
    free = policy('data_free').resolve(168)
    assert free.encoding == pytest.approx(0.525)
    assert free.bn == BNSelection('interpolate', 2, upper_index=1, alpha=0.25)
    calibrated = policy('calibrated').resolve(168, calibrated_sizes=[168])
    assert calibrated.bn == BNSelection('calibrated', 2, size=168)
    with pytest.warns(UserWarning, match='no calibrated BN statistics'):
        fallback = policy('calibrated').resolve(176)
    assert fallback.bn.kind == 'interpolate'
    with pytest.warns(UserWarning, match='outside the trained range'):
        assert policy('data_free').resolve(64).bn.index == 4


def test_training_forward_only_at_training_sizes():
    with pytest.raises(ValueError, match='resolution 200'):
        policy('proxy').resolve(200, training=True)
    with pytest.raises(ValueError, match=(
            r'train_sizes \[224, 192, 160, 128, 96\]: resize training images '
            r'to those sizes \(ResolutionSample\), add 200 to train_sizes, '
            r'or call model\.eval\(\)')):
        policy('proxy').resolve(200, training=True)


def test_unknown_mode():
    with pytest.raises(ValueError, match="'exact'"):
        policy('exact')
    with pytest.raises(ValueError, match=(
            r"unknown inference mode 'exact'; expected one of \['proxy', "
            r"'ideal', 'calibrated', 'data_free'\]: set the backbone's "
            r'inference_mode \(with tools/test\.py: --cfg-options '
            r'inference_mode=calibrated\)')):
        policy('exact')


def test_fallback_warnings_name_the_tool_that_helps():
    with pytest.warns(UserWarning, match=(
            r'no calibrated BN statistics for resolution 176.*tools/'
            r'calibrate_bn\.py CONFIG CKPT --sizes 176 --out CKPT_CAL')):
        policy('calibrated').resolve(176)
    with pytest.warns(UserWarning, match=(
            r'resolution 64 is outside the trained range 96\.\.224.*'
            r'calibrate_bn\.py')):
        policy('data_free').resolve(64)
