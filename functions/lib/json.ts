/** A JSON object (not null, not an array): the shape every untrusted event, body and setting is checked for. */
export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
