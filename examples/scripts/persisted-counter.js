// A counter kept in the files archive, so anyone can read it from the archive.
exports.init = async () => {
  await System.files.writeFile('/count', '0')
}

exports.increment = async () => {
  const count = Number(await System.files.readFile('/count')) + 1
  await System.files.writeFile('/count', String(count))
  return count
}

exports.get = async () => Number(await System.files.readFile('/count'))
