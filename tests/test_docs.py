"""README.md and docs/: every relative link and #anchor resolves, the README
stays a short guide, and the commands shown name real scripts, options and
config files. Static checks of the text, no network, no subprocess."""
import glob
import os.path as osp
import re
import shlex

import pytest

from tests.conftest import REPO

README = osp.join(REPO, 'README.md')
#: The README is a user guide; the pre-stop hook warns above this size.
README_MAX_BYTES = 25 * 1024

FENCE = re.compile(r'^(```|~~~)')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def pages():
    return [README] + sorted(glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True))


def rel(path):
    return osp.relpath(path, REPO)


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def split_blocks(text):
    """``(prose_lines, code_blocks)``: the lines outside fenced code blocks
    (HTML comments and inline code removed) and each block as ``(info,
    lines)``."""
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if block is None and fence:
            block = (line.strip()[3:].strip(), [])
        elif block is not None and fence:
            blocks.append(block)
            block = None
        elif block is not None:
            block[1].append(line)
        else:
            prose.append(re.sub(r'`[^`]*`', '', line))
    return prose, blocks


def slug(heading):
    """GitHub's anchor for a heading: the rendered text, lower case, without
    punctuation (letters, digits, ``_``, ``-`` and spaces stay), spaces as
    hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').replace('**', '').replace('*', '')
    text = re.sub(r'<[^>]+>', '', text).strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(path):
    """Every heading anchor of the page, with GitHub's -1, -2 for repeats."""
    seen, result = {}, set()
    prose, _ = split_blocks(read(path))
    for line in prose:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f'{base}-{count}')
    return result


def links(path):
    """``(target, line)`` of every link and image in the page's prose."""
    prose, _ = split_blocks(read(path))
    return [(m.group(1), line) for line in prose for m in LINK.finditer(line)]


def test_slug_follows_github():
    assert slug('Testing at any size') == 'testing-at-any-size'
    assert slug('Official checkpoints (d-li14/SAN)') == 'official-checkpoints-d-li14san'
    assert slug('san_mm — Scale Adaptive Networks') == 'san_mm--scale-adaptive-networks'
    assert slug('FLOPs and accuracy–FLOPs plots') == 'flops-and-accuracyflops-plots'
    assert slug("How the demo's recipe was chosen") == 'how-the-demos-recipe-was-chosen'
    assert slug('Compiling SAN (`torch.compile`)') == 'compiling-san-torchcompile'
    assert slug('[Link](x.md) and **bold**') == 'link-and-bold'


def test_links_and_images_are_found_outside_code_only():
    text = ('See [a](a.md#x) and ![p](p.png).\n`[no](inline.md)`\n<!-- [no](c.md) -->\n'
            '```\n[no](code.md)\n```\n# Head (1)\n## Head (1)\n')
    prose, blocks = split_blocks(text)
    found = [m.group(1) for line in prose for m in LINK.finditer(line)]
    assert found == ['a.md#x', 'p.png']
    assert blocks == [('', ['[no](code.md)'])]


@pytest.mark.parametrize('page', pages(), ids=rel)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target, line in links(page):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(page), file_part)) if file_part else page
        if not osp.exists(resolved):
            broken.append(f'{target}: no file {rel(resolved)}')
        elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
            broken.append(f'{target}: {rel(resolved)} has no heading with anchor #{anchor}')
    assert not broken, f'{rel(page)}: broken links:\n  ' + '\n  '.join(broken)


def test_readme_stays_a_short_guide():
    size = osp.getsize(README)
    assert size < README_MAX_BYTES, (
        f'README.md is {size} bytes, more than {README_MAX_BYTES}: move detail into a page '
        'of docs/ and link to it')


# ----------------------------------------------------------------------------- commands
def shell_lines(lines):
    """The command lines of a shell block: continuations joined, heredoc
    bodies skipped, ``$VAR`` expanded from the block's own assignments."""
    variables, out, pending, heredoc = {}, [], '', None
    for line in lines:
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if line.rstrip().endswith('\\'):
            pending += (line.lstrip() if pending else line).rstrip()[:-1].rstrip() + ' '
            continue
        line, pending = (pending + line.lstrip() if pending else line), ''
        marker = re.search(r"<<-?\s*'?(\w+)'?", line)
        if marker:
            heredoc = marker.group(1)
        line = re.sub(r'\$\{?(\w+)\}?', lambda m: variables.get(m.group(1), m.group(0)), line)
        assignment = re.fullmatch(r'\s*(\w+)=(\S+)\s*(#.*)?', line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        if line.strip():
            out.append(line)
    return out


def script_options(script):
    """The ``--options`` a script's parser knows (string literals in it, and
    the shared ones of san_mm/apis/cli.py where it adds them)."""
    source = read(osp.join(REPO, script))
    if 'add_common_args' in source:
        source += read(osp.join(REPO, 'san_mm', 'apis', 'cli.py'))
    return set(re.findall(r"""['"](--[\w-]+)['"]""", source))


def test_shell_lines_join_expand_and_skip_heredocs():
    lines = ['CKPT=work/a.pth', 'python tools/test.py cfg.py $CKPT \\', '    --out x.pkl',
             "python - <<'EOF'", 'print("tools/no.py --no")', 'EOF', 'make demo  # c']
    assert shell_lines(lines) == ['python tools/test.py cfg.py work/a.pth --out x.pkl',
                                  "python - <<'EOF'", 'make demo  # c']


def command_problems(page):
    problems = []
    _, blocks = split_blocks(read(page))
    for info, lines in blocks:
        if info not in ('bash', 'sh', 'shell'):
            continue
        for line in shell_lines(lines):
            words = shlex.split(line, comments=True)
            for word in words:
                word = word.split('=', 1)[-1]
                if re.fullmatch(r'configs/[\w/.-]+\.py', word) and not osp.isfile(
                        osp.join(REPO, word)):
                    problems.append(f'{line.strip()}: no config {word}')
            scripts = [i for i, w in enumerate(words)
                       if re.fullmatch(r'(tools|benchmarks)/[\w/.-]+\.(py|sh)', w)]
            for i in scripts:
                script = words[i]
                if not osp.isfile(osp.join(REPO, script)):
                    problems.append(f'{line.strip()}: no script {script}')
                    continue
                if script.endswith('.sh'):
                    continue
                known = script_options(script)
                for word in words[i + 1:]:
                    option = word.split('=', 1)[0]
                    if option.startswith('--') and option not in known:
                        problems.append(f'{line.strip()}: {script} has no option {option}')
    return problems


@pytest.mark.parametrize('page', pages(), ids=rel)
def test_commands_name_real_scripts_options_and_configs(page):
    problems = command_problems(page)
    assert not problems, (f'{rel(page)}: commands that would not run as shown (check the '
                          "tool's --help):\n  " + '\n  '.join(problems))


def test_command_check_finds_what_would_not_run(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('```bash\n'
                    'CONFIG=configs/san_resnet18.py\n'
                    'python tools/test.py $CONFIG CKPT --cfg-options test_sizes=[224] '
                    '--metrics-out m.json\n'
                    'python tools/test.py $CONFIG CKPT --size 160\n'
                    'python tools/no_such_tool.py configs/no_such.py\n'
                    '```\n')
    problems = command_problems(str(page))
    assert len(problems) == 3, problems
    assert problems[0].endswith('tools/test.py has no option --size')
    assert problems[1].endswith('no config configs/no_such.py')
    assert problems[2].endswith('no script tools/no_such_tool.py')
