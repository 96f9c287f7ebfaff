-- Current value of each named setting; NULL when the server does not know the setting.
SELECT name, current_setting(name, true) AS value
  FROM unnest(%(names)s::text[]) AS name;
