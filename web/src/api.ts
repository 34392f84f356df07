// A small client of calnet's API for the dashboard; errors carry the
// API's message so they can be shown next to the control that caused them.
export class ApiError extends Error {
  constructor(public status: number, message: string) { super(message); }
}

export interface Cal { id: string; name?: string; parent: string; depth: number; permissions: string[]; state: string; healthy: boolean; namespace: string; pid?: number; restarts?: number; last_error?: string }
export interface Spawn { id: string; parent: string; state: string; cal?: string; reason?: string; actor: string; requested_at: string; approval?: string }
export interface LogEntry { cal: string; name?: string; time?: string; level?: string; text: string }
export interface LogPage { entries: LogEntry[]; truncated?: number; cursor: string }
export interface WhoAmI { actor: string; admin: boolean; root?: boolean; name?: string; token?: { id: string; parent: string; permissions: string[] } }
export interface Approval {
  id: string; operation: string; cal: string; spawn?: string; actor: string; policy: string; message: string; required: number;
  approvals: { admin: string; at: string; comment?: string }[]; rejection?: { admin: string; comment?: string }; state: string; result?: string;
  subtree_cals?: number; expires_at: string;
}
export interface CalEvent { seq: number; type: string; cal?: string; state?: string; reason?: string }
export interface AuditRecord { seq: number; time: string; type: string; cal?: string; parent?: string; spawn?: string; state?: string; actor?: string; reason?: string; prev: string; hash: string }
export interface AuditPage { records: AuditRecord[]; more: boolean; head_seq: number }

let token = sessionStorage.getItem('calnet-token') ?? '';

export function setToken(t: string) { token = t; sessionStorage.setItem('calnet-token', t); }
export function clearToken() { token = ''; sessionStorage.removeItem('calnet-token'); }
export function hasToken() { return token !== ''; }

// authFetch GETs a non-JSON answer (a profile) with the credential.
export async function authFetch(path: string): Promise<Response> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = JSON.parse(await res.text()).error ?? msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return res;
}

// wsURL is a WebSocket address on this origin; browsers cannot set headers
// on WebSocket requests, so the credential travels as access_token.
export function wsURL(path: string): string {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${proto}://${location.host}${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = JSON.parse(text).error ?? msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return JSON.parse(text) as T;
}

// events follows the WebSocket stream, reconnecting with backoff and
// resuming after the last sequence number seen (survives a control-plane
// restart).
export function events(onEvent: (e: CalEvent) => void, onState: (s: string) => void): () => void {
  let last = 0, stopped = false, ws: WebSocket | null = null, backoff = 250;
  const connect = () => {
    if (stopped) return;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    // A restarted control plane numbers events afresh: the dashboard
    // refetches its state on every (re)connect, so replaying is harmless.
    ws = new WebSocket(`${proto}://${location.host}/v1/events?after=0&access_token=${encodeURIComponent(token)}`);
    ws.onopen = () => { backoff = 250; onState("live"); onEvent({ seq: 0, type: "connected" }); };
    ws.onmessage = (m) => { try { const e = JSON.parse(m.data); last = Math.max(last, e.seq); onEvent(e); } catch { /* ignore */ } };
    // A stream stopped on sign-out may close after the next sign-in's
    // stream opened: it must not report anything then.
    ws.onclose = () => { if (stopped) return; onState('reconnecting…'); setTimeout(connect, backoff = Math.min(backoff * 2, 5000)); };
  };
  connect();
  return () => { stopped = true; ws?.close(); };
}
