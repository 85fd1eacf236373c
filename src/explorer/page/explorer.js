// The explorer's page: plain DOM, no framework, nothing from outside this server. Everything shown
// comes from a VM's log and archive, which are hostile input: it only ever goes into the document as
// text (textContent, attribute values), never as markup.

const PAGE_SIZE = 50

const state = {
  /** The seq the shown page starts at (newest first); null: the newest entries. */
  start: null,
  /** Starts of the newer pages, for "Newer". */
  newer: [],
  /** The next (older) page's start, or null. */
  next: null,
  filter: { method: '', caller: '', failed: false },
  length: 0,
  selected: null,
  divergent: null,
  /** The audit's verdict per call: every entry below this seq replayed as logged (null: no audit yet). */
  checkedBelow: null,
  filesSeq: null,
  /** Folders opened in the files tree: they stay open when the tree is shown as of another call. */
  openFolders: new Set(),
  /** The file shown under the tree, if any. */
  shownFile: null,
}

const $ = (id) => document.getElementById(id)

function el(tag, text, className) {
  const node = document.createElement(tag)
  if (text !== undefined && text !== null) node.textContent = String(text)
  if (className) node.className = className
  return node
}

async function api(path, options) {
  const response = await fetch(path, options)
  const body = await response.json().catch(() => ({}))
  if (!response.ok && response.status !== 409) {
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`
    throw new Error(message)
  }
  return body
}

function short(text, max = 16) {
  if (text === null || text === undefined) return ''
  return text.length > max ? `${text.slice(0, max)}…` : text
}

function callerText(caller) {
  if (caller === null) return '(anonymous)'
  return /^[0-9a-f]{64}$/.test(caller) ? short(caller, 12) : caller
}

// ---- the VM header ----

function fact(list, name, value) {
  const dd = el('dd', value)
  list.append(el('dt', name), dd)
  return dd
}

async function loadVM() {
  const vm = await api('/api/vm')
  state.length = vm.length
  $('vm-title').textContent = vm.title || '(untitled VM)'
  document.title = `${vm.title || 'VM'} — LibVMS explorer`
  $('vm-mode').textContent = `${vm.auth} mode${vm.factory ? ', a VM factory' : ''}`
  const facts = $('vm-facts')
  facts.replaceChildren()
  fact(facts, 'Explored', vm.target)
  fact(facts, 'Call log', vm.callLogUrl)
  fact(facts, 'Files archive', `hyper://${vm.filesKey}`)
  fact(facts, 'Entries', `${vm.length} (${vm.length - 1} calls)`)
  fact(facts, 'Files version', `${vm.filesVersion} (last logged ${vm.loggedFilesVersion})`)
  fact(facts, 'Engine', `${vm.engine.name} ${vm.engine.variant} ${vm.engine.version}; libvms ${vm.engine.libvms}`)
  fact(
    facts,
    'Limits',
    Object.entries(vm.limits)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
  )
  fact(facts, 'Exports', vm.exports.join(', ') || '(none)')
  fact(facts, 'Created', vm.created)
  $('vm-code').textContent = vm.code
  fillList($('methods'), vm.names.methods)
  fillList(
    $('callers'),
    vm.names.callers.map((c) => (c === '' ? '(anonymous)' : c)),
  )
  if (state.filesSeq === null) state.filesSeq = vm.length - 1
  $('files-seq').max = String(vm.length - 1)
}

function fillList(list, names) {
  list.replaceChildren(...names.slice(0, 200).map((name) => Object.assign(document.createElement('option'), { value: name })))
}

// ---- the call log ----

function query() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) })
  if (state.start !== null) params.set('start', String(state.start))
  if (state.filter.method) params.set('method', state.filter.method)
  if (state.filter.caller) params.set('caller', state.filter.caller)
  if (state.filter.failed) params.set('failed', '1')
  return params
}

function matches(row) {
  const f = state.filter
  if (f.method && row.method !== f.method) return false
  if (f.caller) {
    const caller = f.caller === '(anonymous)' ? null : f.caller
    if (row.caller !== caller) return false
  }
  if (f.failed && !row.error) return false
  return true
}

function rowElement(row) {
  const tr = document.createElement('tr')
  tr.tabIndex = 0
  tr.dataset.seq = String(row.seq)
  if (row.error) tr.classList.add('failed')
  const seq = el('td', row.seq, 'seq')
  const caller = el('td', callerText(row.caller), 'caller')
  if (row.caller) caller.title = row.caller
  if (row.signed) caller.append(el('span', ' (signed)', 'size'))
  const outcome = el('td', row.error ? `✗ ${row.error.name}: ${row.error.message}` : row.result, 'outcome')
  tr.append(
    seq,
    el('td', row.time, 'time'),
    caller,
    el('td', row.method, 'method'),
    el('td', row.args, 'args'),
    outcome,
    el('td', row.cost, 'cost'),
    el('td', `v${row.filesVersion}`, 'files-version'),
  )
  markRow(tr)
  return tr
}

/** The divergent entry's row: a class, aria-invalid, and words a screen reader reads. */
function markRow(tr) {
  const divergent = state.divergent !== null && Number(tr.dataset.seq) === state.divergent
  tr.classList.toggle('divergent', divergent)
  tr.classList.toggle('selected', state.selected !== null && Number(tr.dataset.seq) === state.selected)
  const checked = !divergent && state.checkedBelow !== null && Number(tr.dataset.seq) < state.checkedBelow
  tr.classList.toggle('checked', checked)
  if (checked && !tr.querySelector('.checked-mark')) {
    const mark = el('span', ' ✓', 'checked-mark')
    mark.title = 'the audit replayed this call as logged'
    mark.setAttribute('aria-label', 'verified')
    tr.cells[0].append(mark)
  } else if (!checked) tr.querySelector('.checked-mark')?.remove()
  if (divergent) {
    tr.setAttribute('aria-invalid', 'true')
    if (!tr.querySelector('.divergent-note')) tr.cells[0].append(el('span', ' divergent', 'divergent-note visually-hidden'))
  } else {
    tr.removeAttribute('aria-invalid')
    tr.querySelector('.divergent-note')?.remove()
  }
}

function markRows() {
  for (const tr of $('entries-body').rows) markRow(tr)
}

async function loadEntries() {
  $('page-status').textContent = 'loading…'
  const page = await api(`/api/entries?${query()}`)
  state.length = page.length
  state.next = page.next
  const body = $('entries-body')
  body.replaceChildren(...page.rows.map(rowElement))
  $('page-newer').disabled = state.newer.length === 0
  $('page-older').disabled = page.next === null
  const filtered = state.filter.method || state.filter.caller || state.filter.failed
  const range = page.rows.length ? `#${page.rows[0].seq} to #${page.rows[page.rows.length - 1].seq}` : 'no entries'
  $('page-status').textContent = `${range}${filtered ? ' matching the filter' : ''}; the log has ${page.length} entries`
}

/** New rows (oldest first) at the top of the newest page, in one insertion; the page stays PAGE_SIZE rows. */
function addLiveRows(rows) {
  if (state.start !== null) return // not on the newest page: "Newer" shows them
  const body = $('entries-body')
  const shown = new Set([...body.rows].map((tr) => tr.dataset.seq))
  const fresh = rows.filter((row) => matches(row) && !shown.has(String(row.seq))).slice(-PAGE_SIZE)
  if (fresh.length === 0) return
  const rowsAbove = document.createDocumentFragment()
  for (const row of fresh.reverse()) {
    const tr = rowElement(row)
    tr.classList.add('live')
    rowsAbove.append(tr)
  }
  body.prepend(rowsAbove)
  for (let extra = body.rows.length - PAGE_SIZE; extra > 0; extra--) body.lastElementChild.remove()
}

function focusRow(tr) {
  if (tr) tr.focus()
}

function onTableKey(event) {
  const tr = event.target.closest('tr[data-seq]')
  if (!tr) return
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault()
    openDetail(Number(tr.dataset.seq)).catch(report)
  } else if (event.key === 'ArrowDown') {
    event.preventDefault()
    focusRow(tr.nextElementSibling)
  } else if (event.key === 'ArrowUp') {
    event.preventDefault()
    focusRow(tr.previousElementSibling)
  }
}

// ---- an entry ----

async function openDetail(seq) {
  state.selected = seq
  markRows()
  const [one, changes] = await Promise.all([api(`/api/entries/${seq}`), api(`/api/changes?seq=${seq}`)])
  const row = one.row
  $('detail').hidden = false
  $('detail-heading').textContent = `Entry #${seq}${state.divergent === seq ? ' (divergent)' : ''}`
  const facts = $('detail-facts')
  facts.replaceChildren()
  fact(facts, 'Time', row.time)
  fact(facts, 'Caller', row.caller ?? '(anonymous)')
  if (one.signer) {
    fact(facts, 'Signer', one.signer).id = 'detail-signer'
    fact(facts, 'Signature', one.entry.signed.signature).id = 'detail-signature'
    fact(facts, 'Signed payload', one.entry.signed.payload)
  }
  if (one.signature) {
    const check = fact(facts, 'Caller check', signatureText(one.signature))
    check.id = 'detail-signature-check'
    check.className = one.signature.ok ? 'check-ok' : 'check-bad'
  }
  fact(facts, 'Method', row.method)
  fact(facts, 'Arguments', row.args)
  if (row.error) fact(facts, 'Error', `${row.error.name}: ${row.error.message}`)
  else fact(facts, 'Result', row.result ?? '')
  fact(facts, 'Cost', row.cost)
  fact(facts, 'Files', `version ${changes.from} → ${changes.to}`)
  const list = $('detail-changes')
  list.replaceChildren(
    ...changes.changes.map((c) => {
      const what = `${c.type === 'put' ? 'put' : 'deleted'}${c.kind === 'folder' ? ' folder' : ''}`
      const item = el('li', `${what} ${c.path} (v${c.version}) `, `change-${c.type}`)
      if (c.kind === 'folder') return item
      const compare = el('button', 'what changed', 'compare')
      compare.type = 'button'
      compare.addEventListener('click', () => showDiff(seq, c.path).catch(report))
      item.append(compare)
      return item
    }),
  )
  if (changes.changes.length === 0) list.append(el('li', 'nothing'))
  $('detail-diff').hidden = true
  $('detail-json').textContent = JSON.stringify(one.entry, null, 2)
}

/** What the server's caller check of a call says (production mode: its signature). */
function signatureText(signature) {
  if (!signature.ok) return `✗ ${signature.problem.code}: ${signature.problem.message}`
  if (!signature.payload) return "no caller and no signature: the host's own call, attributed to no one"
  const p = signature.payload
  return `✓ the signature verifies with the signer's key, over a payload for this VM, method ${p.method} and these arguments (nonce ${short(p.nonce)}, counter ${p.counter}; the audit checks that no counter repeats)`
}

/**
 * What call `seq` did to the file at `path`: the lines it removed and added (from the server's line
 * diff), and the file before and after, side by side — open by itself when there is no line diff
 * (a binary or large file), with a line saying why.
 */
async function showDiff(seq, path) {
  const contents = async (at) => {
    if (at < 0) return 'not there'
    const response = await fetch(`/api/file?${new URLSearchParams({ seq: String(at), path })}`)
    if (response.status === 404) return 'not there'
    const file = await response.json()
    if (!response.ok) throw new Error(file?.error?.message ?? `${response.status}`)
    return file.encoding === 'utf8' ? file.content : `(binary, base64) ${file.content}`
  }
  const [diff, before, after] = await Promise.all([
    api(`/api/diff?${new URLSearchParams({ seq: String(seq), path })}`),
    contents(seq - 1),
    contents(seq),
  ])
  if (state.selected !== seq) return // another entry was opened meanwhile
  const box = $('detail-diff')
  box.hidden = false
  box.replaceChildren(el('h3', `${path}: what call ${seq} changed`))
  if (diff.diff) {
    const d = diff.diff
    const what = !diff.before.exists ? ' (created by this call)' : !diff.after.exists ? ' (deleted by this call)' : ''
    const summary =
      d.added + d.removed === 0
        ? 'No line changed: the call wrote the same contents'
        : `${plural(d.removed, 'line')} removed, ${plural(d.added, 'line')} added${what}`
    box.append(el('p', `${summary}; archive version ${diff.from} → ${diff.to}`, 'note'))
    box.lastChild.id = 'diff-summary'
    if (d.hunks.length > 0) box.append(diffTable(seq, d))
  } else {
    const why = el('p', `No line diff: ${diff.why}. The file before and after the call is shown side by side.`, 'note')
    why.id = 'diff-why'
    box.append(why)
  }
  const sides = el('details')
  sides.id = 'diff-sides'
  sides.open = !diff.diff
  sides.append(el('summary', 'Before and after, side by side'))
  const grid = el('div', null, 'side-by-side')
  for (const [label, text] of [
    [`Before (as of call ${seq - 1})`, before],
    [`After (as of call ${seq})`, after],
  ]) {
    const side = el('div')
    side.append(el('h4', label), el('pre', text))
    grid.append(side)
  }
  sides.append(grid)
  box.append(sides)
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/** The hunks as a table: line number before, after, − or +, and the line (as text). */
function diffTable(seq, d) {
  const table = el('table', null, 'diff')
  table.id = 'diff-lines'
  table.append(el('caption', `Lines call ${seq} removed (−) and added (+), with unchanged lines around them`, 'visually-hidden'))
  const head = el('thead', null, 'visually-hidden')
  const headRow = el('tr')
  for (const name of ['Line before', 'Line after', 'Change', 'Text']) headRow.append(el('th', name))
  head.append(headRow)
  const body = el('tbody')
  const signs = { same: ['', ''], del: ['−', ' removed'], add: ['+', ' added'] }
  for (const hunk of d.hunks) {
    const header = el('tr', null, 'diff-hunk')
    const cell = el('td', `@@ -${hunk.aStart},${hunk.aLines} +${hunk.bStart},${hunk.bLines} @@`)
    cell.colSpan = 4
    header.append(cell)
    body.append(header)
    for (const line of hunk.lines) {
      const tr = el('tr', null, `diff-${line.op}`)
      const [mark, spoken] = signs[line.op]
      const sign = el('td', mark, 'sign')
      if (spoken) sign.append(el('span', spoken, 'visually-hidden'))
      const text = el('td', line.text, 'text')
      if (line.noNewline) text.append(el('span', ' (no line break at the end)', 'size'))
      tr.append(el('td', line.a ?? '', 'ln'), el('td', line.b ?? '', 'ln'), sign, text)
      body.append(tr)
    }
  }
  table.append(head, body)
  return table
}

// ---- files ----
// The archive as of call `state.filesSeq`, as a tree: each folder a button (aria-expanded) over the
// list of its children, loaded when it is first opened. Folders left open stay open when the tree is
// shown as of another call (those that exist then); the file shown below is shown as of that call too.

/** At most this many open folders are opened again when the call changes. */
const MAX_REOPEN = 200
let treeGeneration = 0
let groupIds = 0

function folderListing(seq, path) {
  return api(`/api/files?${new URLSearchParams({ seq: String(seq), path })}`)
}

function treeItem(child, items) {
  const li = document.createElement('li')
  li.dataset.path = child.path
  li.dataset.type = child.type
  const folder = child.type === 'directory'
  const button = el('button', folder ? `${child.name}/` : child.name, folder ? 'folder' : 'file')
  button.type = 'button'
  button.dataset.path = child.path
  button.dataset.type = child.type
  li.append(button)
  if (folder) {
    const group = document.createElement('ul')
    group.id = `files-group-${++groupIds}`
    group.hidden = true
    button.setAttribute('aria-expanded', 'false')
    button.setAttribute('aria-controls', group.id)
    li.append(group)
  } else {
    li.append(el('span', `${child.size} bytes`, 'size'))
    if (child.path === state.shownFile) button.setAttribute('aria-current', 'true')
  }
  items.set(child.path, li)
  return li
}

/** Fills `list` with a folder's children (an empty folder and a cut listing are said so). */
function fillFolder(list, folder, items) {
  list.replaceChildren(...folder.children.map((child) => treeItem(child, items)))
  if (folder.children.length === 0) list.append(el('li', '(empty)', 'empty'))
  if (folder.truncated) list.append(el('li', `(the listing is cut at ${folder.children.length} names)`, 'empty'))
  list.dataset.loaded = 'true'
}

/** Opens the folder `li`, loading its children as of `seq` the first time. */
async function openFolder(li, seq, items) {
  const list = li.querySelector(':scope > ul')
  if (!list.dataset.loaded) fillFolder(list, await folderListing(seq, li.dataset.path), items)
  list.hidden = false
  li.querySelector(':scope > button').setAttribute('aria-expanded', 'true')
}

function closeFolder(li) {
  li.querySelector(':scope > ul').hidden = true
  li.querySelector(':scope > button').setAttribute('aria-expanded', 'false')
}

/** The tree as of call `seq`, put in the page at once when its open folders are loaded. */
async function loadFiles(seq) {
  const generation = ++treeGeneration
  $('files-status').textContent = 'loading…'
  const items = new Map()
  const root = document.createElement('ul')
  root.className = 'files-tree'
  root.id = 'files-tree'
  const folder = await folderListing(seq, '/')
  fillFolder(root, folder, items)
  // Parents before children: a folder opens only if its parent did.
  const open = [...state.openFolders].sort((a, b) => a.split('/').length - b.split('/').length).slice(0, MAX_REOPEN)
  for (const path of open) {
    const li = items.get(path)
    if (li?.dataset.type === 'directory') await openFolder(li, seq, items)
    if (generation !== treeGeneration) return
  }
  // The file shown below the tree, as of this call too.
  const file = state.shownFile ? await fileAsOf(seq, state.shownFile) : null
  if (generation !== treeGeneration) return
  state.filesSeq = seq
  $('files-seq').value = String(seq)
  $('files-tree').replaceWith(root)
  $('files-status').textContent = `as of call ${seq} (archive version ${folder.version})${folder.truncated ? '; the listing is cut' : ''}`
  if (state.shownFile) renderFile(seq, state.shownFile, file)
}

async function toggleFolder(li) {
  const path = li.dataset.path
  if (li.querySelector(':scope > button').getAttribute('aria-expanded') === 'true') {
    closeFolder(li)
    state.openFolders.delete(path)
    return
  }
  const generation = treeGeneration
  await openFolder(li, state.filesSeq, new Map())
  if (generation === treeGeneration) state.openFolders.add(path)
}

/** The file at `path` as of call `seq` (/api/file), or null when nothing is there then. */
async function fileAsOf(seq, path) {
  const response = await fetch(`/api/file?${new URLSearchParams({ seq: String(seq), path })}`)
  if (response.status === 404) return null
  const file = await response.json()
  if (!response.ok) throw new Error(file?.error?.message ?? `${response.status} ${response.statusText}`)
  return file
}

async function showFile(path) {
  const seq = state.filesSeq
  const file = await fileAsOf(seq, path)
  if (seq !== state.filesSeq) return // the tree moved to another call meanwhile
  state.shownFile = path
  for (const button of $('files-tree').querySelectorAll('button[aria-current]')) button.removeAttribute('aria-current')
  $('files-tree')
    .querySelector(`button[data-type="file"][data-path="${CSS.escape(path)}"]`)
    ?.setAttribute('aria-current', 'true')
  renderFile(seq, path, file)
}

function renderFile(seq, path, file) {
  $('file-view').hidden = false
  $('file-name').textContent = path
  if (!file) {
    $('file-info').textContent = `not there as of call ${seq}`
    $('file-content').textContent = ''
    return
  }
  const what = file.encoding === 'utf8' ? 'text' : 'binary, shown as base64'
  $('file-info').textContent =
    `${file.size} bytes, ${what}, as of call ${file.seq}, ${file.mtime ? `written ${file.mtime}` : 'time unknown'}${file.truncated ? ' (cut)' : ''}`
  $('file-content').textContent = file.content
}

/** The tree's buttons a person can see now (those in open folders), top to bottom. */
function visibleTreeButtons() {
  return [...$('files-tree').querySelectorAll('button')].filter((button) => !button.closest('ul[hidden]'))
}

/** Arrow keys move through the tree; Right opens a folder (or enters it), Left closes it (or goes to its parent). */
function onTreeKey(event) {
  const button = event.target.closest('button[data-path]')
  if (!button) return
  const li = button.parentElement
  const folder = button.dataset.type === 'directory'
  const expanded = button.getAttribute('aria-expanded') === 'true'
  const move = (to) => {
    event.preventDefault()
    to?.focus()
  }
  const shown = () => visibleTreeButtons()
  if (event.key === 'ArrowDown') move(shown()[shown().indexOf(button) + 1])
  else if (event.key === 'ArrowUp') move(shown()[shown().indexOf(button) - 1])
  else if (event.key === 'Home') move(shown()[0])
  else if (event.key === 'End') move(shown().at(-1))
  else if (event.key === 'ArrowRight' && folder) {
    event.preventDefault()
    if (!expanded) toggleFolder(li).catch(reportFiles)
    else li.querySelector(':scope > ul > li > button')?.focus()
  } else if (event.key === 'ArrowLeft') {
    event.preventDefault()
    if (folder && expanded) toggleFolder(li).catch(reportFiles)
    else li.parentElement.closest('li[data-type="directory"]')?.querySelector(':scope > button')?.focus()
  }
}

function reportFiles(error) {
  $('files-status').textContent = `Error: ${error.message}`
}

// ---- the audit ----

function formatSeconds(secs) {
  if (!Number.isFinite(secs)) return '?'
  if (secs < 60) return `${Math.ceil(secs)} s`
  return `${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s`
}

let polling = false

function showAudit(audit) {
  const button = $('audit-start')
  const progress = $('audit-progress')
  const status = $('audit-status')
  if (audit.state === 'running') {
    button.disabled = true
    progress.hidden = false
    progress.max = Math.max(1, audit.total)
    progress.value = audit.done
    state.checkedBelow = audit.done
    markRows()
    const eta = audit.rate > 0 ? formatSeconds((audit.total - audit.done) / audit.rate) : '?'
    status.textContent = `${audit.done} of ${audit.total} entries, ${Math.round(audit.rate)} calls/s, ETA ${eta}`
    if (!polling) pollAudit().catch(report)
    return
  }
  button.disabled = false
  if (audit.state !== 'done') return
  progress.hidden = true
  showVerdict(audit.verdict)
}

function showVerdict(verdict) {
  const box = $('audit-verdict')
  const status = $('audit-status')
  box.replaceChildren()
  state.checkedBelow =
    verdict.verified === true ? verdict.entries : typeof verdict.divergence?.seq === 'number' ? verdict.divergence.seq : null
  markRows()
  if (verdict.verified === true) {
    status.textContent = ''
    const failed = verdict.failedCalls ? ` (${verdict.failedCalls} failed inside the VM, as logged)` : ''
    box.append(el('p', `✓ verified ${verdict.calls} calls${failed}; files at version ${verdict.filesVersion}`, 'verdict-ok'))
    box.firstChild.id = 'verdict-text'
    setDivergent(null)
    return
  }
  if (verdict.verified === null) {
    status.textContent = ''
    box.append(el('p', `The audit could not finish: ${verdict.error.name}: ${verdict.error.message}`, 'verdict-bad'))
    return
  }
  const d = verdict.divergence
  status.textContent = ''
  const head = el('p', `✗ divergence${d.seq !== null && d.seq !== undefined ? ` at seq ${d.seq}` : ''}: ${d.message}`, 'verdict-bad')
  head.id = 'verdict-text'
  box.append(head)
  const facts = el('dl', null, 'facts')
  for (const name of ['seq', 'method', 'caller', 'field', 'path']) if (d[name] !== null && d[name] !== undefined) fact(facts, name, d[name])
  box.append(facts)
  if ('expected' in d || 'actual' in d) {
    const sides = el('div', null, 'side-by-side')
    sides.id = 'divergence-values'
    for (const [label, value] of [
      ['Logged (what the log records)', d.expected],
      ['Found (what the replay or the archive gives)', d.actual],
    ]) {
      const side = el('div')
      side.append(el('h3', label), el('pre', JSON.stringify(value, null, 2) ?? 'nothing'))
      sides.append(side)
    }
    box.append(sides)
  }
  if (d.proof && typeof d.proof.bytes === 'number') {
    const link = el(
      'a',
      `Download the execution proof (${d.proof.bytes} bytes, ${d.proof.entries} entries): nodevms check-proof checks it offline`,
    )
    link.href = '/api/proof'
    link.setAttribute('download', 'execution-proof.json')
    link.id = 'proof-link'
    const line = el('p')
    line.append(link)
    box.append(line)
  } else if (d.proof) {
    const none = el('p', `No execution proof: ${d.proof.why}`, 'note')
    none.id = 'proof-note'
    box.append(none)
  }
  if (typeof d.seq === 'number') {
    const jump = el('button', `Show entry #${d.seq}`)
    jump.type = 'button'
    jump.addEventListener('click', () => showSeq(d.seq).catch(report))
    box.append(jump)
    setDivergent(d.seq)
  }
}

function setDivergent(seq) {
  state.divergent = seq
  markRows()
}

async function showSeq(seq) {
  state.newer = state.start === null ? [] : [...state.newer, state.start]
  state.filter = { method: '', caller: '', failed: false }
  resetFilterForm()
  state.start = Math.min(state.length - 1, seq + Math.floor(PAGE_SIZE / 2))
  await loadEntries()
  await openDetail(seq)
  $('entries-body').querySelector(`tr[data-seq="${seq}"]`)?.focus()
}

async function pollAudit() {
  polling = true
  try {
    // Events carry the progress; this is for a page whose event stream dropped.
    for (let i = 0; i < 100000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000))
      const audit = await api('/api/audit')
      if (audit.state !== 'running') {
        showAudit(audit)
        return
      }
    }
  } finally {
    polling = false
  }
}

async function startAudit() {
  $('audit-verdict').replaceChildren()
  $('audit-status').textContent = 'starting the audit…'
  const answer = await api('/api/audit', { method: 'POST', headers: { 'X-Explorer': '1' } })
  showAudit(answer.audit)
}

// ---- live updates ----

/**
 * What the event stream brought since the page was last drawn: a big audit reports progress many
 * times a second and a busy host sends rows in bursts, so the page draws them at most once a frame
 * (the newest audit state, every new row), not once per event.
 */
const arrived = { rows: [], audit: null, length: null }
let drawScheduled = false

function drawArrived() {
  drawScheduled = false
  const rows = arrived.rows.splice(0)
  const audit = arrived.audit
  arrived.audit = null
  if (rows.length > 0) {
    addLiveRows(rows)
    $('page-status').textContent = `the log has ${arrived.length} entries (new ones appear above)`
  }
  if (audit) showAudit(audit)
}

function scheduleDraw() {
  if (drawScheduled) return
  drawScheduled = true
  // A hidden page gets no animation frames: draw it on a timer instead (the state is kept either way).
  if (document.hidden) setTimeout(drawArrived, 250)
  else requestAnimationFrame(drawArrived)
}

/** Where a fetched log's host stands: gone (trying again), back, or on another history (not followed); hidden while all is well. */
function showHost(host) {
  const status = $('host-status')
  status.dataset.state = host.state
  status.textContent = host.text
  status.hidden = host.state === 'following'
}

function listen() {
  const events = new EventSource('/api/events')
  events.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data)
    if (hello.audit.state !== 'idle') showAudit(hello.audit)
    if (hello.host) showHost(hello.host)
  })
  events.addEventListener('host', (event) => showHost(JSON.parse(event.data)))
  events.addEventListener('entry', (event) => {
    const grown = JSON.parse(event.data)
    state.length = grown.length
    arrived.length = grown.length
    // Only the newest page's worth can be shown: keep no more than that waiting.
    arrived.rows.push(...grown.rows.filter(matches))
    if (arrived.rows.length > PAGE_SIZE) arrived.rows.splice(0, arrived.rows.length - PAGE_SIZE)
    scheduleDraw()
  })
  events.addEventListener('audit', (event) => {
    arrived.audit = JSON.parse(event.data)
    scheduleDraw()
  })
}

// ---- wiring ----

function report(error) {
  $('page-status').textContent = `Error: ${error.message}`
}

function resetFilterForm() {
  $('filter-method').value = state.filter.method
  $('filter-caller').value = state.filter.caller
  $('filter-failed').checked = state.filter.failed
}

function wire() {
  $('filter').addEventListener('submit', (event) => {
    event.preventDefault()
    state.filter = { method: $('filter-method').value.trim(), caller: $('filter-caller').value.trim(), failed: $('filter-failed').checked }
    state.start = null
    state.newer = []
    loadEntries().catch(report)
  })
  $('filter-clear').addEventListener('click', () => {
    state.filter = { method: '', caller: '', failed: false }
    resetFilterForm()
    state.start = null
    state.newer = []
    loadEntries().catch(report)
  })
  $('page-older').addEventListener('click', () => {
    if (state.next === null) return
    state.newer.push(state.start)
    state.start = state.next
    loadEntries().catch(report)
  })
  $('page-newer').addEventListener('click', () => {
    if (state.newer.length === 0) return
    state.start = state.newer.pop()
    loadEntries().catch(report)
  })
  const body = $('entries-body')
  body.addEventListener('keydown', onTableKey)
  body.addEventListener('click', (event) => {
    const tr = event.target.closest('tr[data-seq]')
    if (tr) openDetail(Number(tr.dataset.seq)).catch(report)
  })
  $('files-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const seq = Number($('files-seq').value)
    if (!Number.isSafeInteger(seq) || seq < 0) return
    loadFiles(seq).catch(reportFiles)
  })
  // On the section, not the tree: the tree is replaced whole when shown as of another call.
  const files = $('files')
  files.addEventListener('click', (event) => {
    const button = event.target.closest('#files-tree button[data-path]')
    if (!button) return
    if (button.dataset.type === 'directory') toggleFolder(button.parentElement).catch(reportFiles)
    else showFile(button.dataset.path).catch(reportFiles)
  })
  files.addEventListener('keydown', (event) => {
    if (event.target.closest('#files-tree')) onTreeKey(event)
  })
  $('detail-files').addEventListener('click', () => {
    if (state.selected === null) return
    loadFiles(state.selected).catch(reportFiles)
    $('files').scrollIntoView()
  })
  $('audit-start').addEventListener('click', () => startAudit().catch(report))
}

async function main() {
  wire()
  await loadVM()
  listen()
  await Promise.all([loadEntries(), loadFiles(state.filesSeq), api('/api/audit').then(showAudit)])
  document.body.dataset.ready = 'true'
}

main().catch(report)
