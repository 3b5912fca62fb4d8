"""Writes the papermill-compatibility golden notebooks with nbformat (run from this folder).

cd tests/notebooks && ../../.venv/bin/python make_papermill_compat.py
"""

import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

KS = {"name": "python3", "display_name": "Python 3", "language": "python"}


def nb(cells, kernelspec=KS, **meta):
    n = new_notebook(cells=cells, metadata={"language_info": {"name": "python"}, **meta})
    if kernelspec is not None:
        n.metadata["kernelspec"] = kernelspec
    for i, c in enumerate(n.cells):
        c.id = f"c{i}"
    return n


def stale(cell, count, text):
    cell.execution_count = count
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    return cell


# 1. A notebook saved after an earlier run: every cell carries outputs and counts from that run.
params = new_code_cell("mode = 'ok'", metadata={"tags": ["parameters"]})
stale_nb = nb(
    [
        stale(params, 1, "stale output of the parameters cell\n"),
        stale(new_code_cell("print('fresh first cell')"), 2, "stale output of cell 1\n"),
        stale(
            new_code_cell(
                "import os, time\n"
                "if mode == 'raise':\n    raise ValueError('stopped here')\n"
                "if mode == 'sleep':\n    time.sleep(120)\n"
                "if mode == 'die':\n    os.kill(os.getpid(), 9)\n"
                "print('fresh second cell')"
            ),
            3,
            "stale output of cell 2\n",
        ),
        stale(new_code_cell("print('fresh last cell')"), 4, "STALE: this cell never ran in this run\n"),
    ]
)
nbformat.write(stale_nb, "stale_outputs.ipynb")

# 2. Error markers left by papermill and by an earlier nbjobs run, in a notebook that now succeeds.
pm_banner = new_markdown_cell(
    '<span style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;">'
    "An Exception was encountered at '<a href=\"#papermill-error-cell\">In [2]</a>'.</span>",
    metadata={"tags": ["papermill-error-cell-tag"]},
)
pm_anchor = new_markdown_cell(
    '<span id="papermill-error-cell" style="color:red;">Execution using papermill encountered an exception '
    "here and stopped:</span>",
    metadata={"tags": ["papermill-error-cell-tag"]},
)
nbj_anchor = new_markdown_cell(
    '<span id="nbjobs-error-cell"></span>', metadata={"tags": ["nbjobs-error-marker"]}
)
markers_nb = nb(
    [
        pm_banner,
        new_code_cell("print('one')"),
        pm_anchor,
        stale(new_code_cell("print('two')"), 2, "old\n"),
        nbj_anchor,
        new_code_cell("print('three')"),
        new_markdown_cell("An ordinary markdown cell stays.", metadata={"tags": ["keep"]}),
    ]
)
nbformat.write(markers_nb, "stale_error_markers.ipynb")

# 3. sys.exit in its forms: `how` picks one.
exit_params = new_code_cell("how = 'bare'", metadata={"tags": ["parameters"]})
exits_nb = nb(
    [
        exit_params,
        new_code_cell("print('before exit')"),
        new_code_cell(
            "import sys\n"
            "if how == 'bare':\n    sys.exit()\n"
            "elif how == 'zero':\n    sys.exit(0)\n"
            "elif how == 'raise':\n    raise SystemExit\n"
            "else:\n    sys.exit(int(how))"
        ),
        stale(new_code_cell("print('after exit')"), 7, "STALE after exit\n"),
    ]
)
nbformat.write(exits_nb, "exits_with_sys_exit.ipynb")

# 4. Kernel names.
nbformat.write(
    nb(
        [new_code_cell("import sys\nprint('kernel', sys.version_info[0])")],
        kernelspec={"name": "python", "display_name": "Python", "language": "python"},
    ),
    "kernel_named_python.ipynb",
)
nbformat.write(nb([new_code_cell("print('no kernelspec ran')")], kernelspec=None), "no_kernelspec.ipynb")
unnamed = nb([new_code_cell("print('unnamed kernelspec ran')")])
unnamed.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python"}
with open("kernelspec_without_name.ipynb", "w") as f:  # invalid for nbformat's schema: written as JSON
    json.dump(unnamed, f, indent=1)

# 5. Where the kernel runs, and parameters typed as papermill types them.
nbformat.write(nb([new_code_cell("import os\nprint('cwd=' + os.getcwd())")]), "prints_cwd.ipynb")
typed = nb(
    [
        new_code_cell("a = b = c = d = e = f = g = h = i = j = 'unset'", metadata={"tags": ["parameters"]}),
        new_code_cell("print(repr((a, b, c, d, e, f, g, h, i, j)))"),
    ]
)
nbformat.write(typed, "prints_parameter_types.ipynb")
