import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/** Why the node is not healthy or not ready; empty when it is. */
export interface Probes {
  /** `/health`: serving clients and, with replication configured, connected to the broker. */
  readonly health: () => string[];
  /** `/ready`: accepting clients (not starting, not stopping). */
  readonly ready: () => string[];
}

/**
 * The operator's HTTP port (`[metrics]`): `GET /metrics` (Prometheus text), `GET /health` and
 * `GET /ready` (200 with `{"status":"ok"}`, or 503 with the reasons). Nothing else is served.
 */
export class MetricsServer {
  private readonly http: Server;

  constructor(
    private readonly registry: Registry,
    private readonly probes: Probes,
    private readonly logger: Logger,
  ) {
    this.http = createServer((req, res) => void this.handle(req, res));
    // A scraper that keeps its connection open must not hold up shutdown.
    this.http.keepAliveTimeout = 5000;
    this.http.headersTimeout = 10_000;
    this.http.requestTimeout = 10_000;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        this.http.on('error', (err) => this.logger.error({ err }, 'metrics listener error'));
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.reply(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
    try {
      if (path === '/metrics') return this.reply(res, 200, this.registry.contentType, await this.registry.metrics());
      if (path === '/health') return this.probe(res, this.probes.health());
      if (path === '/ready') return this.probe(res, this.probes.ready());
      return this.reply(res, 404, 'text/plain', 'not found: try /metrics, /health or /ready\n');
    } catch (err) {
      this.logger.error({ err }, 'metrics request failed');
      return this.reply(res, 500, 'text/plain', 'internal error\n');
    }
  }

  private probe(res: ServerResponse, reasons: string[]): void {
    const body = reasons.length === 0 ? { status: 'ok' } : { status: 'unavailable', reasons };
    this.reply(res, reasons.length === 0 ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`);
  }

  private reply(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }
}
