// PLACEHOLDER: replaced by the real thin handler (being written by the core author).
export const handler = async (event: unknown): Promise<unknown> => ({
  error: 'server_error',
  error_description: 'placeholder handler',
  status: 500,
  echo: typeof event,
});
