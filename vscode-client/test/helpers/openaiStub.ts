// A scripted OpenAI-compatible chat server on loopback: a fake at the network boundary, so an evolve run
// finds a better prompt deterministically. The evolver appends HINT to the instructions; the task model
// answers with the gold SQL exactly when HINT is in its instructions (so the child beats the root on dev).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export const HINT = 'Check the schema before writing the query.';

interface ChatRequest {
  messages: { role: string; content: string }[];
}

export function scriptedReply(req: ChatRequest, golds: Record<string, string>): string {
  // the evolver's request and the task's question are in the last *user* message (never in a prefill)
  const user = [...req.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  const current = /<current>\n([\s\S]*?)\n<\/current>/.exec(user);
  if (current) {
    const cur = current[1];
    return cur.includes(HINT) ? `<prompt>${cur}\nBe brief.</prompt>` : `<prompt>${cur}\n${HINT}</prompt>`;
  }
  const question = /^Question:\n(.*)$/m.exec(user)?.[1] ?? '';
  const system = req.messages[0]?.role === 'system' ? req.messages[0].content : '';
  const instructions = system.split('**Instructions**\n').pop() ?? '';
  const gold = golds[question];
  return instructions.includes(HINT) && gold ? `<answer>${gold}</answer>` : '<answer>SELECT 0 WHERE 0</answer>';
}

export interface Stub {
  baseUrl: string;
  requests: number;
  close: () => Promise<void>;
}

export async function startStub(golds: Record<string, string>, port = 0): Promise<Stub> {
  const stub: Stub = { baseUrl: '', requests: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf-8')));
    req.on('end', () => {
      const send = (status: number, data: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(data));
      };
      if (req.method === 'GET' && req.url?.endsWith('/models')) {
        send(200, { object: 'list', data: [{ id: 'scripted', object: 'model' }] });
        return;
      }
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        send(404, { error: { message: `no route ${req.method} ${req.url}` } });
        return;
      }
      stub.requests += 1;
      const content = scriptedReply(JSON.parse(body) as ChatRequest, golds);
      send(200, {
        id: `chatcmpl-${stub.requests}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: 'scripted',
        choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1, completion_tokens: content.split(/\s+/).length, total_tokens: 1 },
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  stub.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  stub.close = () => new Promise((resolve) => server.close(() => resolve()));
  return stub;
}
