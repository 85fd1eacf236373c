// A key-value server with admins: the first caller to claim it becomes the admin, admins add
// admins, anyone reads, only admins write.
exports.init = async () => {
  await System.files.mkdir('/keys')
  await System.files.writeFile('/admins.json', '[]')
}

async function admins() {
  return JSON.parse(await System.files.readFile('/admins.json'))
}

async function assertAdmin() {
  const caller = System.caller.id
  if (!caller || !(await admins()).includes(caller)) {
    throw new Error('Only an admin can do that')
  }
}

function keyPath(name) {
  if (typeof name !== 'string' || !/^[\w.-]{1,100}$/.test(name)) throw new Error('Key names are 1-100 of [A-Za-z0-9_.-]')
  return '/keys/' + name
}

exports.claim = async () => {
  const list = await admins()
  if (list.length > 0) throw new Error('This key server already has an admin')
  if (!System.caller.id) throw new Error('Connect with a user id to claim the server')
  await System.files.writeFile('/admins.json', JSON.stringify([System.caller.id]))
  return System.caller.id
}

exports.addAdmin = async (id) => {
  await assertAdmin()
  const list = await admins()
  if (!list.includes(id)) list.push(id)
  await System.files.writeFile('/admins.json', JSON.stringify(list))
  return list
}

exports.listAdmins = () => admins()

exports.put = async (name, value) => {
  await assertAdmin()
  await System.files.writeFile(keyPath(name), JSON.stringify(value))
}

exports.get = async (name) => {
  try {
    return JSON.parse(await System.files.readFile(keyPath(name)))
  } catch (err) {
    if (err.name === 'NotFound') return null
    throw err
  }
}

exports.list = () => System.files.readdir('/keys')
