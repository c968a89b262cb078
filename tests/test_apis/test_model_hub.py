from mmpretrain import get_model, list_models

from san_mm.models import SANClassifier


def test_project_models_are_in_mmpretrains_hub():
    names = list_models('san*')
    assert {'san-resnet18_8xb32_in1k', 'san-resnet50_8xb32_in1k',
            'san-mobilenetv2_8xb32_in1k',
            'san-resnet18_fashion-mnist'} <= set(names)
    # mmpretrain's own models are still there
    assert 'resnet18_8xb32_in1k' in list_models('resnet18*')


def test_get_model_by_name():
    model = get_model('san-resnet18_fashion-mnist')
    assert isinstance(model, SANClassifier)
    assert model.backbone.train_sizes == (28, 24, 20, 16, 12)
