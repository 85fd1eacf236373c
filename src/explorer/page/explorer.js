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
  filesPath: '/',
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
  list.append(el('dt', name), el('dd', value))
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

function addLiveRows(rows) {
  if (state.start !== null) return // not on the newest page: "Newer" shows them
  const body = $('entries-body')
  for (const row of rows) {
    if (!matches(row) || body.querySelector(`tr[data-seq="${row.seq}"]`)) continue
    const tr = rowElement(row)
    tr.classList.add('live')
    body.prepend(tr)
  }
  while (body.rows.length > PAGE_SIZE) body.lastElementChild.remove()
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
    fact(facts, 'Signer', one.signer)
    fact(facts, 'Signature', one.entry.signed.signature)
    fact(facts, 'Signed payload', one.entry.signed.payload)
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
      const item = el('li', `${c.type === 'put' ? 'put' : 'deleted'} ${c.path} (v${c.version}) `, `change-${c.type}`)
      const compare = el('button', 'before / after', 'compare')
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

/** A file as the call found it and as it left it, side by side (a file that was not there: said so). */
async function showDiff(seq, path) {
  const contents = async (at) => {
    if (at < 0) return 'not there'
    const response = await fetch(`/api/file?${new URLSearchParams({ seq: String(at), path })}`)
    if (response.status === 404) return 'not there'
    const file = await response.json()
    if (!response.ok) throw new Error(file?.error?.message ?? `${response.status}`)
    return file.encoding === 'utf8' ? file.content : `(binary, base64) ${file.content}`
  }
  const [before, after] = await Promise.all([contents(seq - 1), contents(seq)])
  const box = $('detail-diff')
  box.hidden = false
  box.replaceChildren(el('h3', `${path}: before and after call ${seq}`))
  const sides = el('div', null, 'side-by-side')
  for (const [label, text] of [
    [`Before (as of call ${seq - 1})`, before],
    [`After (as of call ${seq})`, after],
  ]) {
    const side = el('div')
    side.append(el('h4', label), el('pre', text))
    sides.append(side)
  }
  box.append(sides)
}

// ---- files ----

async function loadFiles(seq, path) {
  $('files-status').textContent = 'loading…'
  const folder = await api(`/api/files?${new URLSearchParams({ seq: String(seq), path })}`)
  // Shown all at once, when the listing is in.
  state.filesSeq = seq
  state.filesPath = path
  $('files-seq').value = String(seq)
  $('files-path').textContent = path
  $('files-up').disabled = path === '/'
  const list = $('files-list')
  list.replaceChildren(
    ...folder.children.map((child) => {
      const li = document.createElement('li')
      const button = el('button', child.type === 'directory' ? `${child.name}/` : child.name)
      button.type = 'button'
      button.dataset.path = child.path
      button.dataset.type = child.type
      li.append(button)
      if (child.type === 'file') li.append(el('span', `${child.size} bytes`, 'size'))
      return li
    }),
  )
  if (folder.children.length === 0) list.append(el('li', '(empty)'))
  $('files-status').textContent = `as of call ${seq} (archive version ${folder.version})${folder.truncated ? '; the listing is cut' : ''}`
}

async function showFile(path) {
  const file = await api(`/api/file?${new URLSearchParams({ seq: String(state.filesSeq), path })}`)
  $('file-view').hidden = false
  $('file-name').textContent = file.path
  const what = file.encoding === 'utf8' ? 'text' : 'binary, shown as base64'
  $('file-info').textContent =
    `${file.size} bytes, ${what}, as of call ${file.seq}, ${file.mtime ? `written ${file.mtime}` : 'time unknown'}${file.truncated ? ' (cut)' : ''}`
  $('file-content').textContent = file.content
}

function parentOf(path) {
  const i = path.lastIndexOf('/')
  return i <= 0 ? '/' : path.slice(0, i)
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
    if (!polling) pollAudit()
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

function listen() {
  const events = new EventSource('/api/events')
  events.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data)
    if (hello.audit.state !== 'idle') showAudit(hello.audit)
  })
  events.addEventListener('entry', (event) => {
    const grown = JSON.parse(event.data)
    state.length = grown.length
    addLiveRows(grown.rows)
    $('page-status').textContent = `the log has ${grown.length} entries (new ones appear above)`
  })
  events.addEventListener('audit', (event) => showAudit(JSON.parse(event.data)))
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
    $('file-view').hidden = true
    loadFiles(seq, '/').catch((error) => {
      $('files-status').textContent = `Error: ${error.message}`
    })
  })
  $('files-up').addEventListener('click', () => loadFiles(state.filesSeq, parentOf(state.filesPath)).catch(report))
  $('files-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-path]')
    if (!button) return
    const path = button.dataset.path
    if (button.dataset.type === 'directory') loadFiles(state.filesSeq, path).catch(report)
    else showFile(path).catch(report)
  })
  $('detail-files').addEventListener('click', () => {
    if (state.selected === null) return
    $('file-view').hidden = true
    loadFiles(state.selected, '/').catch(report)
    $('files').scrollIntoView()
  })
  $('audit-start').addEventListener('click', () => startAudit().catch(report))
}

async function main() {
  wire()
  await loadVM()
  listen()
  await Promise.all([loadEntries(), loadFiles(state.filesSeq, '/'), api('/api/audit').then(showAudit)])
  document.body.dataset.ready = 'true'
}

main().catch(report)
