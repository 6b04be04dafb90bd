DROP TABLE invitations;
DROP TABLE members;
