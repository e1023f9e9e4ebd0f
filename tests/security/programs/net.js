// Network from node: net.connect, dns.lookup (getaddrinfo) and dns.resolve
// (c-ares talking to a DNS server directly).
const net = require('net');
const dns = require('dns');
const env = process.env;
const probes = [['127.0.0.1', env.SERVER_PORT], ['127.0.0.1', env.LISTEN_PORT],
                ['198.51.100.1', '80']];
if (env.HOST_IP) probes.push([env.HOST_IP, env.LISTEN_PORT]);
const results = [];

function tcp(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({host, port: Number(port), timeout: 2000});
    s.on('connect', () => { s.destroy(); resolve(`tcp ${host} ${port} CONNECTED`); });
    s.on('error', () => resolve(`tcp ${host} ${port} blocked`));
    s.on('timeout', () => { s.destroy(); resolve(`tcp ${host} ${port} blocked`); });
  });
}

(async () => {
  for (const [h, p] of probes) results.push(await tcp(h, p));
  results.push(await new Promise((resolve) => dns.lookup('example.com', (e) =>
    resolve(e ? 'dns lookup example.com failed' : 'dns lookup example.com RESOLVED'))));
  results.push(await new Promise((resolve) => {
    const r = new dns.Resolver({timeout: 1000, tries: 1});
    r.resolve4('example.com', (e) =>
      resolve(e ? 'dns resolve example.com failed' : 'dns resolve example.com RESOLVED'));
  }));
  for (const line of results) console.log(line);
})();
