/**
 * The stage's configuration, checked by `osls package` and `osls deploy` (the plugin infra/config-check-plugin.cjs
 * runs these): the broker's own loader (functions/lib/config/load-config.ts) on the environment the token function
 * would get, and what only the deployment can get wrong (who may invoke, who administers the token key, the stage's
 * name, the signing key of private_key_jwt clients: signing-check.ts). Each finding names the stage parameter to
 * change. docs/configuration.md lists every check.
 */
import { principalMatches } from '../functions/lib/callers/grants';
import { parseRevocation } from '../functions/lib/config/caller-list';
import { ENV } from '../functions/lib/config/env-names';
import { parsePrincipal } from '../functions/lib/config/grants';
import { loadConfig } from '../functions/lib/config/load-config';
import type { Caller, CallerGrant, Principal } from '../functions/lib/domain/caller';
import type { BrokerConfig } from '../functions/lib/domain/settings';
import { ConfigurationError } from '../functions/lib/shared/errors';
import { checkSigningKeys } from './signing-check';

/** What the checks found: errors fail the packaging, warnings are printed. */
export interface Findings {
  errors: string[];
  warnings: string[];
}

/** The parts of serverless.yml the checks read, as osls holds them (`params`, `provider.environment`, ...). */
export type RawConfig = Record<string, unknown> & { params?: Record<string, Record<string, unknown> | null> };

/** Which stage parameter each setting of the token function comes from. */
export interface ParameterSources {
  /** Environment variable -> stage parameter (`BROKER_CALLERS` -> `brokerCallers`). */
  env: Record<string, string>;
  /**
   * BROKER_CLIENTS field -> stage parameter (`tokenUrl` -> `limitrailTokenUrl`) while the stage builds BROKER_CLIENTS
   * from the default template; empty when the stage sets brokerClients itself.
   */
  clientFields: Record<string, string>;
}

export interface StageSettings {
  stage: string;
  region: string;
  /** The token function's name (the default proof audience). */
  functionName: string;
  /** The stage's resolved parameters: `--param`, then the stage's block, then `default` (osls's order). */
  params: Record<string, unknown>;
  /** The token function's resolved environment; CloudFormation references stay objects. */
  environment: Record<string, unknown>;
  sources: ParameterSources;
}

/** A stage named like this is production: `prod`, `production`, `live`, alone or as a dash/dot/underscore part. */
const PRODUCTION_PART = /^(prod|production|live)\d*$/i;
/** `${param:name}` without a fallback: osls fails when the stage does not define `name`. */
const PARAM_REFERENCE = /\$\{param:([A-Za-z0-9_-]+)\}/g;
/**
 * A variable set to one stage parameter: `${param:name}`, or a property of infra/callers-parameter.cjs, named after
 * the stage parameter it comes from (`brokerCallers`, `callersParameter`).
 */
const WHOLE_PARAM_REFERENCE = /^\$\{(?:param:|file\(infra\/callers-parameter\.cjs\):)([A-Za-z0-9_-]+)\}$/;
/** callersParameter `create`: the stack creates the parameter from brokerCallers and revokedCallers. */
const CREATE_CALLERS_PARAMETER = 'create';

const PARAMETER_HINTS: Record<string, string> = {
  limitrailTokenUrl: 'the LimitRail token endpoint, https://...',
  limitrailClientId: 'the public lr_... client id',
};

export const looksLikeProduction = (stage: string): boolean =>
  stage.split(/[-_.]/).some((part) => PRODUCTION_PART.test(part));

const names = (cliParams: readonly string[]): string[] => cliParams.map((p) => p.split('=')[0]!.trim());

const definedIn = (block: Record<string, unknown> | null | undefined): string[] =>
  Object.entries(block ?? {})
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([name]) => name);

/** Every `${param:name}` (without a fallback) in a value, however deep. */
const referencedParams = (value: unknown, into: Set<string>): Set<string> => {
  if (typeof value === 'string') for (const [, name] of value.matchAll(PARAM_REFERENCE)) into.add(name!);
  else if (Array.isArray(value)) for (const v of value) referencedParams(v, into);
  else if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) referencedParams(v, into);
  return into;
};

/**
 * The stage parameters serverless.yml uses without a fallback that neither `--param`, the stage's block nor
 * `default` defines (what osls would report as `Cannot resolve variable at "params.default.brokerClients"`).
 * Other stages' blocks are left out, as osls leaves them unresolved.
 */
export const missingParameters = (raw: RawConfig, stage: string, cliParams: readonly string[] = []): string[] => {
  const { params = {}, ...rest } = raw;
  const used = referencedParams(rest, new Set());
  referencedParams(params?.default, used);
  referencedParams(params?.[stage], used);
  const defined = new Set([...names(cliParams), ...definedIn(params?.[stage]), ...definedIn(params?.default)]);
  return [...used].filter((name) => !defined.has(name));
};

export const missingParametersMessage = (stage: string, missing: readonly string[]): string =>
  [
    `stage "${stage}" does not set ${missing.length === 1 ? 'this required stage parameter' : `these ${missing.length} required stage parameters`}:`,
    ...missing.map((name) => `  - ${name}${PARAMETER_HINTS[name] ? ` (${PARAMETER_HINTS[name]})` : ''}`),
    `Set each in a "${stage}:" block under "params" in serverless.yml, or with --param "<name>=<value>" (docs/configuration.md).`,
  ].join('\n');

/**
 * Which stage parameter each setting comes from, read from the raw serverless.yml: an environment variable set to
 * `${param:x}` comes from x; a BROKER_CLIENTS field written `"tokenUrl":"${param:y}"` in the default brokerClients
 * comes from y, unless the stage (or `--param`) sets brokerClients itself.
 */
export const parameterSources = (
  raw: RawConfig,
  stage: string,
  cliParams: readonly string[] = [],
): ParameterSources => {
  const provider = (raw.provider ?? {}) as { environment?: Record<string, unknown> };
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(provider.environment ?? {})) {
    const m = typeof value === 'string' ? WHOLE_PARAM_REFERENCE.exec(value) : null;
    if (m) env[name] = m[1]!;
  }
  const clientsParam = env[ENV.clients];
  const overridden =
    clientsParam !== undefined &&
    (names(cliParams).includes(clientsParam) || definedIn(raw.params?.[stage]).includes(clientsParam));
  const template = clientsParam === undefined || overridden ? undefined : raw.params?.default?.[clientsParam];
  const clientFields: Record<string, string> = {};
  if (typeof template === 'string') {
    for (const [, field, param] of template.matchAll(/"(\w+)"\s*:\s*"?\$\{param:([A-Za-z0-9_-]+)\}/g)) {
      clientFields[field!] = param!;
    }
  }
  return { env, clientFields };
};

/** The stage parameter a loader message is about: by its leading variable, and for BROKER_CLIENTS by its field. */
const parameterOf = (message: string, sources: ParameterSources): string | undefined => {
  const variable = /^[A-Z][A-Z0-9_]*/.exec(message)?.[0];
  if (variable === ENV.clients) {
    const field = Object.keys(sources.clientFields).find((f) => new RegExp(`\\.${f}(?:\\[|\\s|$)`).test(message));
    if (field) return sources.clientFields[field];
  }
  return variable === undefined ? sources.env[ENV.clients] : sources.env[variable];
};

const parseJson = (text: unknown): unknown => {
  try {
    return typeof text === 'string' ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
};

const quote = (value: unknown): string => JSON.stringify(String(value).slice(0, 128));

/**
 * For a message about a grant's principal, client or scope: the value it names (none of them is secret), and for a
 * scope the scopes the client has. The loader's own messages never quote values.
 */
const grantDetail = (message: string, environment: Record<string, unknown>): string => {
  const m = /^BROKER_CALLERS\[(\d+)\]\.(?:(principal|client)|scopes\[(\d+)\])/.exec(message);
  const grant = m && (parseJson(environment[ENV.callers]) as Record<string, unknown>[] | undefined)?.[Number(m[1])];
  if (!m || typeof grant !== 'object' || grant === null) return '';
  if (m[2]) return ` (${quote(grant[m[2]])})`;
  const scope = (grant.scopes as unknown[] | undefined)?.[Number(m[3])];
  const client = (parseJson(environment[ENV.clients]) as Record<string, { scopes?: unknown }> | undefined)?.[
    String(grant.client)
  ];
  const has = Array.isArray(client?.scopes) ? `; client ${quote(grant.client)} has ${client.scopes.join(', ')}` : '';
  return ` (${quote(scope)}${has})`;
};

const asText = (value: unknown): string => (value === undefined || value === null ? '' : String(value).trim());

/** Whether the stack creates the callers parameter from the stage's brokerCallers (callersParameter `create`). */
const createsCallersParameter = (settings: StageSettings): boolean =>
  asText(settings.params.callersParameter) === CREATE_CALLERS_PARAMETER;

/**
 * The environment loadConfig reads in the function, with placeholders for what CloudFormation fills in. When the
 * stack creates the callers parameter, its first value is the stage's brokerCallers: checked as BROKER_CALLERS.
 */
const functionEnvironment = (settings: StageSettings): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { AWS_REGION: settings.region, AWS_LAMBDA_FUNCTION_NAME: settings.functionName };
  for (const [name, value] of Object.entries(settings.environment)) {
    env[name] = typeof value === 'object' && value !== null ? `<${name} from CloudFormation>` : asText(value);
  }
  if (createsCallersParameter(settings)) {
    env[ENV.callers] = asText(settings.params.brokerCallers);
    delete env[ENV.callersParameter];
  }
  return env;
};

/** A principal's own session (a role's) or itself (a user), as the broker would see it proven. */
const identityOf = (principal: Principal & { kind: 'role' | 'user' }): Caller =>
  principal.kind === 'role'
    ? {
        arn: `arn:${principal.partition}:sts::${principal.accountId}:assumed-role/${principal.roleName}/package-check`,
        accountId: principal.accountId,
        principalOrgId: undefined,
      }
    : { arn: principal.arn, accountId: principal.arn.split(':')[4]!, principalOrgId: undefined };

/** Whether every principal an invoke permission for `invoker` admits has a grant (the broker would serve it). */
const covered = (invoker: Principal, grants: readonly CallerGrant[]): boolean => {
  switch (invoker.kind) {
    case 'account':
      return grants.some((g) => g.principal.kind === 'account' && g.principal.accountId === invoker.accountId);
    case 'organization':
      return false;
    default:
      return grants.some((g) => principalMatches(g.principal, identityOf(invoker)));
  }
};

const checkInvokePrincipals = (settings: StageSettings, config: BrokerConfig, errors: string[]): void => {
  const entries = parseJson(settings.params.invokePrincipals ?? '[]');
  if (!Array.isArray(entries)) {
    errors.push('stage parameter invokePrincipals must be a JSON array of principals');
    return;
  }
  for (const entry of new Set(entries)) {
    const principal = typeof entry === 'string' ? parsePrincipal(entry) : undefined;
    if (!principal) {
      errors.push(
        `stage parameter invokePrincipals: ${quote(entry)} is not an IAM role or user ARN, an account id or an organization id`,
      );
    } else if (!covered(principal, config.grants)) {
      const advice =
        principal.kind === 'account' || principal.kind === 'organization'
          ? 'name the roles that have grants rather than a whole account or organization'
          : 'add a grant for it to brokerCallers or remove it';
      errors.push(
        `stage parameter invokePrincipals: ${quote(entry)} is not covered by any grant in brokerCallers; with ` +
          `callerAuth "grants" every direct invoke it allows without a grant is refused, at the cost of an invocation ` +
          `and the function's concurrency: ${advice}`,
      );
    }
  }
};

const checkKeyAdmin = (settings: StageSettings, errors: string[], warnings: string[]): void => {
  // With an existing key, this stack writes no key policy: the key's owner decides who may change it.
  if (asText(settings.params.existingTokenKmsKeyArn) !== '' || asText(settings.params.tokenKeyAdminRoleArn) !== '')
    return;
  const why =
    'any principal of the account that IAM allows kms:PutKeyPolicy can rewrite the token key policy and grant ' +
    'itself kms:Decrypt; set it to the role CloudFormation deploys this stack as';
  if (looksLikeProduction(settings.stage))
    errors.push(`stage "${settings.stage}" looks like production and does not set tokenKeyAdminRoleArn: ${why}`);
  else warnings.push(`stage parameter tokenKeyAdminRoleArn is not set: ${why} (required on production stages)`);
};

const checkReservedConcurrency = (settings: StageSettings, errors: string[]): void => {
  const raw = asText(settings.params.tokenReservedConcurrency);
  if (raw === '' || (/^\d+$/.test(raw) && Number(raw) >= 1)) return;
  errors.push(
    `stage parameter tokenReservedConcurrency must be a whole number of at least 1, or unset (no reservation)` +
      (raw === '0' ? ': 0 would throttle every call of the token function' : ''),
  );
};

/** With callersParameter `create`: the revoked principals the created parameter starts with. */
const checkRevokedCallers = (settings: StageSettings, errors: string[]): void => {
  const entries = parseJson(settings.params.revokedCallers ?? '[]');
  if (!Array.isArray(entries)) {
    errors.push('stage parameter revokedCallers must be a JSON array of ARNs');
    return;
  }
  entries.forEach((entry, i) => {
    if (typeof entry !== 'string' || !parseRevocation(entry)) {
      errors.push(
        `stage parameter revokedCallers: [${i}] ${quote(entry)} is not an IAM role or user ARN or an assumed-role ` +
          'session ARN (an account or organization is not revoked: remove its grant from brokerCallers)',
      );
    }
  });
};

const checkCallers = (settings: StageSettings, config: BrokerConfig, findings: Findings): void => {
  const callersParam = settings.sources.env[ENV.callers] ?? 'brokerCallers';
  if (config.callersParameter) {
    findings.warnings.push(
      `the callers come from the SSM parameter ${config.callersParameter.name} (${ENV.callersParameter}) at run ` +
        'time: packaging cannot check them or whether they cover invokePrincipals',
    );
    return;
  }
  if (createsCallersParameter(settings)) checkRevokedCallers(settings, findings.errors);
  if (config.grants.length === 0) {
    findings.warnings.push(
      config.callerAuth === 'grants'
        ? `stage parameter ${callersParam} grants nobody: with callerAuth "grants" every call is refused (access_denied)`
        : `stage parameter ${callersParam} grants nobody: no Function URL call is served, and direct invokers ` +
            '(invokePrincipals) get every configured scope (callerAuth "invoke-permission")',
    );
  }
  for (const grant of config.grants.filter((g) => g.principal.kind === 'organization')) {
    findings.warnings.push(
      `stage parameter ${callersParam} grants organization ${quote(grant.principalText)}: every principal of it may ` +
        `call the Function URL for ${[...grant.scopes].join(', ')} without an identity proof; grant accounts or roles ` +
        'where you can (callerAuth "grants" refuses organization grants)',
    );
  }
  if (config.callerAuth === 'grants') checkInvokePrincipals(settings, config, findings.errors);
};

/** Every check of a stage about to be packaged or deployed. */
export const checkStage = (settings: StageSettings): Findings => {
  const findings: Findings = { errors: [], warnings: [] };
  const { environment, sources } = settings;
  if (asText(environment[ENV.allowLoopbackTokenUrl]) === 'true') {
    findings.errors.push(
      `stage parameter ${sources.env[ENV.allowLoopbackTokenUrl] ?? ENV.allowLoopbackTokenUrl} is "true", which ` +
        'only the local stage (npm start, never packaged) may set: inside Lambda 127.0.0.1:9001 is the Runtime API, ' +
        'and a plain-http token URL would send the client secret in clear',
    );
  }
  let config: BrokerConfig | undefined;
  const functionEnv = functionEnvironment(settings);
  try {
    config = loadConfig(functionEnv);
  } catch (err) {
    if (!(err instanceof ConfigurationError)) throw err;
    const problem = err.message.replace(/^invalid configuration: /, '');
    const parameter = parameterOf(problem, sources);
    findings.errors.push(
      `${parameter ? `stage parameter ${parameter}` : 'the token function environment'}: ${problem}` +
        grantDetail(problem, functionEnv),
    );
  }
  if (config) checkCallers(settings, config, findings);
  if (config) checkSigningKeys(settings, config, findings);
  checkKeyAdmin(settings, findings.errors, findings.warnings);
  checkReservedConcurrency(settings, findings.errors);
  return findings;
};

export const findingsMessage = (stage: string, errors: readonly string[]): string =>
  [
    `stage "${stage}" is refused: its configuration would not work as deployed (docs/configuration.md, "Checked at package time"):`,
    ...errors.map((e) => `  - ${e}`),
  ].join('\n');
