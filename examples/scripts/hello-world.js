// Greets the caller by id. In debug mode the id is whatever the client says it is.
exports.hello = () => `Hello, ${System.caller.id || 'stranger'}!`
