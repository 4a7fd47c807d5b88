"""What the measuring tools print and write: markdown tables, JSON files, and
the environment a measurement ran in."""
import json
import logging
import os
import platform
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from mmengine.logging import MMLogger


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; numbers as they were formatted by the caller."""
    def line(cells):
        return '| ' + ' | '.join(str(c) for c in cells) + ' |'
    out = [line(headers), line(['---'] * len(headers))]
    out.extend(line(row) for row in rows)
    return '\n'.join(out)


def fmt(value: Optional[float], digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def check_json_target(path: Optional[str]) -> None:
    """Refuse an output path whose file is not a JSON report (a checkpoint,
    a config, a folder): only a report a tool wrote before is replaced.
    The tools call it before they measure, and :func:`write_json` again."""
    if path is None:
        return
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f'--out {out} is a folder; give a file name')
    if out.exists():
        with open(out, 'rb') as file:
            start = file.read(64).lstrip()
        if not start.startswith(b'{'):
            raise FileExistsError(
                f'--out {out} exists and is not a JSON report (a checkpoint '
                'or another file of yours?); nothing was written: give '
                'another path')


def write_json(path: str, data: dict) -> None:
    """``data`` as indented JSON at ``path`` (folders made as needed); an
    existing file is replaced only if it is a JSON report."""
    check_json_target(path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f'\nwrote {out}')


def quiet_mmengine() -> None:
    """Only errors from mmengine's logger (its 'no pre-trained weights' and
    'unsupported operator' warnings are expected here)."""
    MMLogger.get_current_instance().setLevel(logging.ERROR)


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def environment(threads: Optional[int]) -> dict:
    """Sets torch's threads when given; describes what the run used."""
    if threads is not None:
        torch.set_num_threads(threads)
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), load_average_start=load_average())


def device_name(device) -> str:
    """The GPU's name for a CUDA device, else the CPU's (as the platform
    names it)."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'cpu'
