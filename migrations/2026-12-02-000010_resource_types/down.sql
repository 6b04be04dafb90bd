DROP TABLE resource_types;
