/** The model the change-stream tests cache, and a Sequelize on a private PostgreSQL. */
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';

export function defineItem(sequelize: Sequelize, table: string): ModelStatic<Model> {
  return sequelize.define('Item', {
    name: DataTypes.STRING,
    n: DataTypes.INTEGER,
    at: DataTypes.DATE,
  }, { tableName: table, timestamps: false });
}

export function privateSequelize(port: number, database: string): Sequelize {
  return new Sequelize(database, 'postgres', '', { host: '127.0.0.1', port, dialect: 'postgres', logging: false });
}
