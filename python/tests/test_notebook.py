"""examples/psum.ipynb executed headless with nbclient: the seed's session prints four equal
psum lines, one per rank."""
import re

import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_psum_notebook_prints_four_equal_sums():
    examples = ROOT / "examples"
    nb = nbformat.read(str(examples / "psum.ipynb"), as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(examples)}}).execute()
    print_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "%px print(s)")
    text = "".join(o.get("text", "") for o in print_cell.outputs if o.output_type == "stream")
    lines = re.findall(r"^\[stdout:(\d+)\] (\S+)$", text, re.M)
    assert [int(r) for r, _ in lines] == [0, 1, 2, 3], text
    values = {v for _, v in lines}
    assert len(values) == 1, text
    assert 0 < float(values.pop()) < 400
