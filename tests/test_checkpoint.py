"""Checkpoints on torch >= 2.6: mmengine's own objects load with weights_only
kept on, anything else pickled is refused by name, and nothing is touched."""
import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

from dit_mm.engine import UnsafeCheckpointError, load_from_local_safely


class LineData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.tensor([float(i)])
        return dict(inputs=x, targets=3 * x + 1)


class LineModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


def make_runner(work_dir, **kwargs):
    return Runner(
        model=LineModel(), work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=LineData(), batch_size=2,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='StepLR', step_size=2, by_epoch=False),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), default_scope='mmengine', **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('run')
    make_runner(work_dir).train()
    return work_dir / 'iter_4.pth'


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plain_torch_load_fails_on_mmengine_checkpoints(runner_checkpoint):
    """The trap this module exists for (torch >= 2.6 defaults to weights_only)."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint)


def test_runner_checkpoint_loads_with_weights_only(runner_checkpoint):
    ckpt = load_from_local_safely(str(runner_checkpoint))
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers'} <= set(ckpt)
    assert ckpt['meta']['iter'] == 4
    # and through mmengine's own entry point, which dit_mm re-routes
    assert _load_checkpoint(str(runner_checkpoint))['meta']['iter'] == 4


def test_runner_checkpoint_loads_in_a_fresh_process(runner_checkpoint):
    """No HistoryBuffer exists yet there, unlike in this test process."""
    code = ('import dit_mm; from mmengine.runner.checkpoint import '
            f'_load_checkpoint; print(_load_checkpoint({str(runner_checkpoint)!r})'
            "['meta']['iter'])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == '4'
    assert 'by local_safely backend' in out.stdout


def test_resume_and_load_from_work(runner_checkpoint, tmp_path):
    runner = make_runner(tmp_path, resume=True,
                         load_from=str(runner_checkpoint))
    runner.train()  # resumes at iter 4 == max_iters: nothing left to do
    assert runner.iter == 4
    fresh = make_runner(tmp_path / 'b', load_from=str(runner_checkpoint))
    fresh.load_or_resume()
    loaded = fresh.model.state_dict()['fc.weight']
    saved = load_from_local_safely(str(runner_checkpoint))['state_dict']
    assert torch.equal(loaded, saved['fc.weight'])


def _touch(path):  # what a malicious pickle would run on load
    Path(path).write_text('pwned')


class Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker, ))


def test_foreign_pickled_object_is_refused_by_name(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)},
                'meta': {'x': Payload(str(marker))}}, path)
    digest = sha(path)
    with pytest.raises(UnsafeCheckpointError, match=r'test_checkpoint\._touch'):
        load_from_local_safely(str(path))
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        _load_checkpoint(str(path))
    assert not marker.exists()
    assert sha(path) == digest


def test_truncated_checkpoint_gets_a_clear_error(runner_checkpoint, tmp_path):
    broken = tmp_path / 'broken.pth'
    data = runner_checkpoint.read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match='truncated or corrupt'):
        load_from_local_safely(str(broken))
    assert broken.read_bytes() == data[:len(data) // 2]


@pytest.mark.parametrize('content', [b'not a checkpoint at all' * 10,
                                     b'a damaged checkpoint', b''])
def test_bytes_that_are_no_checkpoint_are_named(tmp_path, content):
    """Whatever opcodes garbage bytes make for the unpickler (unsupported,
    a pop from an empty stack, none at all), the error names the file."""
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(content)
    with pytest.raises(RuntimeError,
                       match=r'broken\.pth is not a torch checkpoint'):
        load_from_local_safely(str(broken))
    assert broken.read_bytes() == content


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_from_local_safely(str(tmp_path / 'nope.pth'))
