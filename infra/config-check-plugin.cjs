// osls plugin: checks the stage's configuration before `osls package` and `osls deploy` (also `deploy function`), so
// a stage the broker would refuse at start-up is never packaged. The checks are infra/config-check.ts, which runs the
// broker's own configuration loader (functions/lib/config/load-config.ts); this file only wires them into osls:
//   - at start-up, before osls resolves the stage parameters, the required ones missing, named together (instead of
//     osls's `Cannot resolve variable at "params.default.brokerClients"`);
//   - before packaging (or deploying), the resolved environment of the token function and the stage parameters:
//     errors fail the command with every problem listed, warnings are printed.
// The TypeScript is loaded with tsx (a devDependency, like osls itself), so the checks always run the current sources.
'use strict';

const CHECKED_COMMANDS = ['package', 'deploy', 'deploy function'];

let checks;
/** infra/config-check.ts, loaded once (only for the commands that check). */
const loadChecks = async () => {
  if (!checks) {
    checks = import('tsx/esm/api').then(({ tsImport }) => tsImport('./config-check.ts', __filename));
  }
  return checks;
};

class BrokerConfigCheck {
  constructor(serverless, options, { log }) {
    this.serverless = serverless;
    this.options = options;
    this.log = log;
    this.checked = false;
    const check = () => this.check();
    this.hooks = {
      'before:package:initialize': check,
      // `deploy --package <dir>` skips packaging; a deploy that packages has been checked already.
      'before:deploy:deploy': check,
      'before:deploy:function:initialize': check,
    };
  }

  applies() {
    return CHECKED_COMMANDS.includes((this.serverless.processedInput.commands ?? []).join(' '));
  }

  stage() {
    return String(this.options.stage ?? this.serverless.getProvider('aws').getStage());
  }

  cliParams() {
    return [].concat(this.options.param ?? []);
  }

  /** Runs before osls resolves `${param:...}`: the raw configuration still shows which parameter feeds what. */
  async asyncInit() {
    if (!this.applies()) return;
    this.raw = structuredClone(this.serverless.configurationInput);
    const { missingParameters, missingParametersMessage } = await loadChecks();
    const missing = missingParameters(this.raw, this.stage(), this.cliParams());
    if (missing.length > 0) throw new this.serverless.classes.Error(missingParametersMessage(this.stage(), missing));
  }

  async check() {
    if (this.checked || !this.raw) return;
    this.checked = true;
    const { checkStage, findingsMessage, parameterSources } = await loadChecks();
    const { service } = this.serverless;
    const stage = this.stage();
    const cliParams = this.cliParams();
    const resolved = this.serverless.configurationInput.params ?? {};
    // osls's order: --param, then the stage's block, then default; a null value counts as not set.
    const params = {};
    for (const block of [resolved.default, resolved[stage]]) {
      for (const [name, value] of Object.entries(block ?? {}))
        if (value !== null && value !== undefined) params[name] = value;
    }
    for (const entry of cliParams) {
      const at = entry.indexOf('=');
      if (at > 0) params[entry.slice(0, at)] = entry.slice(at + 1).trimEnd();
    }
    const token = service.getFunction('token');
    const { errors, warnings } = checkStage({
      stage,
      region: this.serverless.getProvider('aws').getRegion(),
      functionName: token.name,
      params,
      environment: { ...service.provider.environment, ...token.environment },
      sources: parameterSources(this.raw, stage, cliParams),
    });
    for (const warning of warnings) this.log.warning(warning);
    if (errors.length > 0) throw new this.serverless.classes.Error(findingsMessage(stage, errors));
  }
}

module.exports = BrokerConfigCheck;
