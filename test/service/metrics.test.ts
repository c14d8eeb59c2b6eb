import { describe, expect, it } from 'vitest';
import { pascalName, snakeName, stepKind } from '../../shared/service/metrics.js';

describe('metric names and dimension values', () => {
  it('a per-repository step loses its repository; other steps are kept as they are', () => {
    const repos = ['app', 'libs/lib'];
    expect(stepKind('clone app', repos)).toBe('clone');
    expect(stepKind('read heads of libs/lib', repos)).toBe('read heads');
    expect(stepKind('update refs of app', repos)).toBe('update refs');
    expect(stepKind('content check libs/lib', repos)).toBe('content check');
    expect(stepKind('git fetch', repos)).toBe('git fetch');
    expect(stepKind('setup', repos)).toBe('setup');
    // A step that merely ends like a repository name is not cut.
    expect(stepKind('snapshot', ['shot'])).toBe('snapshot');
  });

  it('one catalogue name, spelled for each exporter', () => {
    expect(snakeName('workspacesCreated')).toBe('workspaces_created');
    expect(pascalName('workspacesCreated')).toBe('WorkspacesCreated');
  });
});
