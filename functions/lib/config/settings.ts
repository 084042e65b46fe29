/** Reading single environment settings: required strings, bounded integers, booleans. Errors name the variable. */
import { invalidConfiguration as fail } from '../shared/errors';

export const requiredString = (env: NodeJS.ProcessEnv, name: string): string => {
  const value = env[name]?.trim();
  return value ? value : fail(`${name} is not set`);
};

export const integerSetting = (
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number => {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  return Number.isInteger(value) && value >= min && value <= max
    ? value
    : fail(`${name} must be an integer from ${min} to ${max}`);
};

export const booleanSetting = (env: NodeJS.ProcessEnv, name: string): boolean => {
  const raw = env[name]?.trim() ?? '';
  if (raw === '' || raw === 'false') return false;
  return raw === 'true' ? true : fail(`${name} must be "true" or "false"`);
};
