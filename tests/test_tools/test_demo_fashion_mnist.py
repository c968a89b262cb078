"""tools/demo_fashion_mnist.py's record of the validation runs: each run's
recipe comes from the config it trained, and the table marks the recipe the
demo config trains now."""
import json

from tests.conftest import load_script


def load_demo():
    return load_script('tools/demo_fashion_mnist.py')


def test_recipe_follows_the_config_and_its_options():
    demo = load_demo()
    assert demo.recipe_of(demo.config_with([])) == dict(
        crop=[0.65, 1.0], epochs=10, batch=128, lr=0.1, sampled_sizes='all',
        kd='dense')
    varied = demo.recipe_of(demo.config_with([
        'train_dataloader.dataset.pipeline.0.crop_ratio_range=(0.5,1.0)',
        'train_cfg.max_epochs=6', 'optim_wrapper.optimizer.lr=0.2',
        'model.num_sampled_sizes=2',
        'train_dataloader.dataset.split=train']))
    assert varied == dict(crop=[0.5, 1.0], epochs=6, batch=128, lr=0.2,
                          sampled_sizes=2, kd='dense')
    sandwich = demo.recipe_of(demo.config_with([
        'model.num_sampled_sizes=1', 'model.sandwich=True',
        'model.distill.mode=largest']))
    assert (sandwich['sampled_sizes'], sandwich['kd']) == ('sandwich+1', 'largest')


def test_choices_table_marks_the_configs_recipe(tmp_path, monkeypatch):
    demo = load_demo()
    run = dict(mean_train=88.0, at_28=89.0, smooth=True, wall_minutes=9.0,
               gaps=[dict(size=18, best=86.0, lower_neighbour=87.0,
                          below=1.0)], options=[])
    chosen = demo.recipe_of(demo.config_with([]))
    other = dict(chosen, epochs=6)
    choices = tmp_path / 'choices.json'
    choices.write_text(json.dumps(dict(validation_runs=[
        dict(run, recipe=other), dict(run, recipe=chosen)])))
    monkeypatch.setattr(demo, 'CHOICES', str(choices))
    lines = demo.choices_table().splitlines()
    assert len(lines) == 4
    assert lines[2].startswith('| (0.65, 1) | 6 | 128 | 0.1 | all | dense |')
    assert lines[3].startswith('| **(0.65, 1)** | **10** | **128** |')
    assert lines[3].endswith('| -1.00 at 18 px | yes | 9.0 |')


def test_epochs_option_keeps_the_demo_schedule_shape():
    # a longer demo than the config's 10 epochs validates no more than the
    # config does (never while training) and checkpoints once, at the end
    demo = load_demo()
    cfg = demo.config_with(demo.epoch_options(16))
    assert cfg.train_cfg.max_epochs == 16 and cfg.train_cfg.val_interval > 16
    assert (cfg.param_scheduler.end, cfg.param_scheduler.T_max) == (16, 16)
    assert cfg.default_hooks.checkpoint.interval == 16
    assert demo.recipe_of(cfg)['epochs'] == 16
